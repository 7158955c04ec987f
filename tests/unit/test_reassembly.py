"""Reassembly (proto/reassembly.py): order, copies from several circuits, duplicates, bounds."""

from __future__ import annotations

import pytest

from backchannel.proto import wire
from backchannel.proto.reassembly import (
    MAX_COPIES,
    MAX_HELD_BYTES_PER_LINE,
    MAX_PARTIAL,
    WINDOW,
    Assembled,
    Duplicate,
    Partial,
    Reassembly,
    Refused,
)
from backchannel.proto.wire import CHUNK, Fragment

from support.figures import figure

LINE = b"L" * 16
OTHER = b"M" * 16


def fragments(seq: int, size: int = 3 * CHUNK - 5) -> list[Fragment]:
    data = bytes((seq + i) % 251 for i in range(size))
    chunks = wire.split(data)
    return [Fragment(seq, i, len(chunks), c) for i, c in enumerate(chunks)]


def envelope_of(frags: list[Fragment]) -> bytes:
    return b"".join(f.chunk for f in frags)


def test_a_single_fragment_entry_is_assembled_at_once() -> None:
    r: Reassembly[str] = Reassembly()
    (only,) = fragments(1, size=100)
    assert r.add(LINE, only, "t") == Assembled(LINE, 1, only.chunk, ("t",))
    assert r.partial_count(LINE) == 0


def test_fragments_in_any_order_assemble_once_with_every_token() -> None:
    r: Reassembly[str] = Reassembly()
    a, b, c = fragments(4)
    assert r.add(LINE, c, "c") == Partial(LINE, 4, 1, 3)
    assert r.add(LINE, a, "a") == Partial(LINE, 4, 2, 3)
    result = r.add(LINE, b, "b")
    assert isinstance(result, Assembled)
    assert result.envelope == envelope_of([a, b, c]) and sorted(result.tokens) == ["a", "b", "c"]
    assert r.add(LINE, a, "late") == Duplicate(("late",))
    assert r.held_bytes() == 0 and r.held_tokens() == 0


def test_copies_from_other_circuits_are_interchangeable_and_all_acknowledged_after() -> None:
    r: Reassembly[str] = Reassembly()
    a, b = fragments(2, size=2 * CHUNK)
    assert isinstance(r.add(LINE, a, "a@1"), Partial)
    assert isinstance(r.add(LINE, a, "a@2"), Partial)  # held, not acknowledged yet
    result = r.add(LINE, b, "b@2")
    assert isinstance(result, Assembled)
    assert sorted(result.tokens) == ["a@1", "a@2", "b@2"]


def test_more_copies_of_one_chunk_than_circuits_are_duplicates_at_once() -> None:
    r: Reassembly[int] = Reassembly()
    a, _ = fragments(2, size=2 * CHUNK)
    for token in range(MAX_COPIES):
        assert isinstance(r.add(LINE, a, token), Partial)
    assert r.add(LINE, a, 99) == Duplicate((99,))
    assert r.held_tokens() == MAX_COPIES


def test_what_is_delivered_is_a_duplicate_and_drop_below_returns_the_held_tokens() -> None:
    r: Reassembly[str] = Reassembly()
    five, six = fragments(5)[0], fragments(6)[0]
    r.add(LINE, five, "5")
    r.add(LINE, six, "6")
    assert r.drop_below(LINE, 5) == ["5"]
    assert r.drop_below(LINE, 4) == []  # the floor never goes down
    assert r.add(LINE, fragments(5)[1], "5b") == Duplicate(("5b",))
    assert r.partial_count(LINE) == 1
    assert r.forget(LINE) == ["6"] and r.partial_count(LINE) == 0


def test_delivered_upto_given_to_add_raises_the_floor() -> None:
    r: Reassembly[str] = Reassembly()
    assert r.add(LINE, fragments(50_000)[0], "x", delivered_upto=49_999) == Partial(LINE, 50_000, 1, 3)
    assert r.add(LINE, fragments(49_999)[0], "y") == Duplicate(("y",))


def test_a_seq_beyond_the_window_is_refused() -> None:
    r: Reassembly[str] = Reassembly()
    r.drop_below(LINE, 100)
    assert isinstance(r.add(LINE, fragments(100 + WINDOW)[0], "ok"), Partial)
    assert r.add(LINE, fragments(101 + WINDOW)[0], "far") == Refused("window", ("far",))


def test_the_partial_limit_refuses_new_entries_but_not_single_fragments_or_known_ones() -> None:
    r: Reassembly[int] = Reassembly()
    for seq in range(1, MAX_PARTIAL + 1):
        assert isinstance(r.add(LINE, fragments(seq)[0], seq), Partial)
    assert r.add(LINE, fragments(MAX_PARTIAL + 1)[0], -1) == Refused("partial_limit", (-1,))
    assert isinstance(r.add(LINE, fragments(MAX_PARTIAL + 2, size=10)[0], -2), Assembled)
    assert isinstance(r.add(LINE, fragments(1)[1], 1), Partial)  # an entry already held goes on
    assert r.partial_count(LINE) == MAX_PARTIAL
    assert isinstance(r.add(OTHER, fragments(1)[0], 0), Partial)  # the bound is per line


def test_a_copy_that_disagrees_with_the_held_chunks_is_refused() -> None:
    r: Reassembly[str] = Reassembly()
    a, b, _ = fragments(3)
    r.add(LINE, a, "a")
    assert r.add(LINE, Fragment(3, 1, 2, b.chunk), "count") == Refused("inconsistent", ("count",))
    assert r.add(LINE, Fragment(3, 0, 3, b.chunk), "bytes") == Refused("inconsistent", ("bytes",))
    assert r.add(LINE, b, "b") == Partial(LINE, 3, 2, 3)


def test_reopen_lets_an_entry_whose_commit_failed_assemble_again() -> None:
    r: Reassembly[str] = Reassembly()
    (only,) = fragments(1, size=10)
    assert isinstance(r.add(LINE, only, "first"), Assembled)
    r.reopen(LINE, 1)
    assert isinstance(r.add(LINE, only, "again"), Assembled)


@pytest.mark.parametrize("line", [LINE, OTHER])
def test_forget_of_a_line_without_state_is_empty(line: bytes) -> None:
    assert Reassembly[str]().forget(line) == []


def test_a_flood_of_incomplete_entries_and_copies_holds_at_most_the_bound() -> None:
    """A hostile relay (replaying or withholding) pushes the first fragment of 20 000 nine-fragment
    entries, ten copies of each: memory stays at the bound and every copy is answered."""
    r: Reassembly[int] = Reassembly()
    full = b"x" * CHUNK
    answered = refused = 0
    token = 0
    for seq in range(1, 20_001):
        for _ in range(MAX_COPIES + 2):
            token += 1
            result = r.add(LINE, Fragment(seq, 0, 9, full), token)
            if isinstance(result, Refused):
                refused += 1
                answered += len(result.tokens)
            elif isinstance(result, Duplicate):
                answered += len(result.tokens)
    figure("reassembly held under a 200 000-fragment flood", r.held_bytes() / 1024, "KiB")
    figure("reassembly fragments refused (fragment_limit)", refused, "fragments")
    assert r.partial_count(LINE) == MAX_PARTIAL
    assert r.held_bytes() == MAX_PARTIAL * CHUNK <= MAX_HELD_BYTES_PER_LINE
    assert r.held_tokens() == MAX_PARTIAL * MAX_COPIES
    assert answered + r.held_tokens() == token  # every copy is held (ACKed later) or answered now
