"""The transcript: two per-direction hash chains and a head that names both."""

from __future__ import annotations

import hashlib

import pytest

from backchannel.proto.transcript import ENTRY, GENESIS, HEAD, Transcript, genesis, next_hash

LINE = bytes(range(16))
OTHER_LINE = bytes(range(1, 17))


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def build(entries: list[tuple[int, bytes]], line_id: bytes = LINE) -> Transcript:
    t = Transcript.start(line_id)
    for direction, payload in entries:
        t = t.append(direction, t.counts[direction] + 1, payload)
    return t


def test_a_new_transcript_starts_from_the_genesis_of_each_direction() -> None:
    t = Transcript.start(LINE)
    assert t.counts == (0, 0)
    assert t.heads == (sha(GENESIS + LINE + b"\x00"), sha(GENESIS + LINE + b"\x01"))
    assert t.heads[0] != t.heads[1]


def test_entries_follow_the_documented_formula_byte_for_byte() -> None:
    t = Transcript.start(LINE).append(0, 1, b"first").append(1, 1, b"reply").append(0, 2, b"second")
    h01 = sha(ENTRY + LINE + b"\x00" + (1).to_bytes(8, "big") + genesis(LINE, 0) + sha(b"first"))
    h02 = sha(ENTRY + LINE + b"\x00" + (2).to_bytes(8, "big") + h01 + sha(b"second"))
    h11 = sha(ENTRY + LINE + b"\x01" + (1).to_bytes(8, "big") + genesis(LINE, 1) + sha(b"reply"))
    assert t.heads == (h02, h11)
    assert t.counts == (2, 1)
    expected_head = sha(HEAD + LINE + (2).to_bytes(8, "big") + h02 + (1).to_bytes(8, "big") + h11)
    assert t.head() == expected_head
    assert next_hash(LINE, 0, 1, genesis(LINE, 0), b"first") == h01


def test_the_head_does_not_depend_on_how_the_directions_interleave() -> None:
    a = [(0, b"a1"), (0, b"a2"), (0, b"a3")]
    b = [(1, b"b1"), (1, b"b2")]
    one = build(a + b)
    two = build([a[0], b[0], a[1], b[1], a[2]])
    three = build(b + a)
    assert one.head() == two.head() == three.head()


@pytest.mark.parametrize(
    "change",
    ["altered", "dropped", "injected", "swapped", "moved-direction"],
)
def test_any_change_to_the_record_changes_the_head(change: str) -> None:
    entries = [(0, b"a1"), (1, b"b1"), (0, b"a2"), (0, b"a3")]
    changed = list(entries)
    if change == "altered":
        changed[2] = (0, b"A2")
    elif change == "dropped":
        del changed[2]
    elif change == "injected":
        changed.insert(1, (1, b"evil"))
    elif change == "swapped":
        changed[2], changed[3] = changed[3], changed[2]
    else:
        changed[3] = (1, b"a3")
    assert build(changed).head() != build(entries).head()


def test_the_same_entries_on_another_line_give_another_head() -> None:
    entries = [(0, b"x"), (1, b"y")]
    assert build(entries, LINE).head() != build(entries, OTHER_LINE).head()


def test_append_returns_a_new_transcript_and_leaves_the_old_one_alone() -> None:
    start = Transcript.start(LINE)
    after = start.append(0, 1, b"x")
    assert start.counts == (0, 0)
    assert after.counts == (1, 0)
    assert start.head() != after.head()


@pytest.mark.parametrize("seq", [0, 2, 3])
def test_an_entry_out_of_order_is_refused(seq: int) -> None:
    with pytest.raises(ValueError, match="out of order"):
        Transcript.start(LINE).append(0, seq, b"x")


def test_a_repeated_entry_is_refused() -> None:
    t = Transcript.start(LINE).append(1, 1, b"x")
    with pytest.raises(ValueError):
        t.append(1, 1, b"x")


def test_an_empty_head_differs_from_one_with_an_empty_payload() -> None:
    assert Transcript.start(LINE).head() != Transcript.start(LINE).append(0, 1, b"").head()
