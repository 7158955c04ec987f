"""Reassembly under any arrival order, any copies, and hostile input.

1. Envelopes split, sealed on 1–3 circuits, copies duplicated, shuffled and fed in any order,
   with ``drop_below`` as deliveries advance: each envelope comes out exactly once and whole, and
   every copy's token comes back exactly once (in its ``Assembled`` or as a duplicate), so the
   station acknowledges every copy to the relay that pushed it and nothing twice.
2. Any sequence of fragments (arbitrary seq, index, count, chunk) and floors cannot grow the
   held state beyond the bound.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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
from backchannel.proto.wire import CHUNK, MAX_FRAGMENTS, Fragment

LINE = b"L" * 16
URLS = ["wss://a.example", "wss://b.example", "wss://c.example"]
LINE_KEY = bytes(range(32))

PROPERTY = settings(
    deadline=None, max_examples=120, database=None, suppress_health_check=[HealthCheck.too_slow]
)

sizes = st.one_of(
    st.integers(1, 300),
    st.integers(CHUNK - 2, CHUNK + 2),
    st.integers(1, wire.MAX_SPLIT),
    st.just(wire.MAX_SPLIT),
)


@PROPERTY
@given(
    lengths=st.lists(sizes, min_size=1, max_size=4),
    circuits=st.integers(1, 3),
    extra_copies=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
    first_seq=st.integers(1, 2**40),
)
def test_any_order_and_any_copies_reassemble_each_envelope_exactly_once(
    lengths: list[int], circuits: int, extra_copies: int, seed: int, first_seq: int
) -> None:
    rng = random.Random(seed)
    envelopes = {first_seq + i: rng.randbytes(n) for i, n in enumerate(lengths)}
    arrivals: list[tuple[Fragment, str]] = []
    for url in URLS[:circuits]:
        keys = wire.circuit_keys(LINE_KEY, url)
        for seq, data in envelopes.items():
            for number, frame in enumerate(wire.seal_fragments(keys, seq, data)):
                opened = wire.open_frame(keys, frame)
                assert isinstance(opened, Fragment)
                for copy in range(1 + rng.randint(0, extra_copies)):
                    arrivals.append((opened, f"{url}/{seq}/{number}/{copy}"))
    rng.shuffle(arrivals)

    r: Reassembly[str] = Reassembly()
    r.drop_below(LINE, first_seq - 1)
    assembled: dict[int, bytes] = {}
    acked: list[str] = []
    for fragment, token in arrivals:
        result = r.add(LINE, fragment, token)
        if isinstance(result, Assembled):
            assert result.seq not in assembled
            assembled[result.seq] = result.envelope
            acked.extend(result.tokens)
            # The station delivers in order: the floor advances over every consecutive assembled seq.
            upto = first_seq - 1
            while upto + 1 in assembled:
                upto += 1
            acked.extend(r.drop_below(LINE, upto))
        elif isinstance(result, Duplicate):
            acked.extend(result.tokens)
        else:
            assert isinstance(result, Partial), result
    assert assembled == envelopes
    assert sorted(acked) == sorted(token for _, token in arrivals)
    assert r.partial_count(LINE) == 0 and r.held_bytes() == 0 and r.held_tokens() == 0


fragments = st.builds(
    Fragment,
    seq=st.one_of(st.integers(1, 60), st.integers(1, 2 * WINDOW), st.integers(1, 2**64 - 1)),
    index=st.integers(0, MAX_FRAGMENTS - 1),
    count=st.integers(2, MAX_FRAGMENTS),
    chunk=st.sampled_from([b"x" * CHUNK, b"y" * CHUNK, b"z"]),
)
events = st.one_of(
    st.tuples(st.just("add"), st.sampled_from([b"A" * 16, b"B" * 16]), fragments),
    st.tuples(st.just("floor"), st.sampled_from([b"A" * 16, b"B" * 16]), st.integers(0, 3 * WINDOW)),
)


FLOOD = [
    ("add", b"A" * 16, Fragment(seq, 0, MAX_FRAGMENTS, b"x" * CHUNK)) for seq in range(1, 3 * MAX_PARTIAL)
]
COPIES = [("add", b"A" * 16, Fragment(7, 0, 2, b"x" * CHUNK)) for _ in range(3 * MAX_COPIES)]


@PROPERTY
@example(FLOOD)  # more incomplete entries than the bound, all in the window
@example(COPIES)  # one chunk pushed again and again
@example([*FLOOD, ("floor", b"A" * 16, MAX_PARTIAL), *FLOOD])
@given(st.lists(events, max_size=400))
def test_no_sequence_of_fragments_grows_the_state_beyond_its_bound(
    script: list[tuple[str, bytes, object]],
) -> None:
    r: Reassembly[int] = Reassembly()
    given_tokens = 0
    returned: set[int] = set()
    for step, (action, line, arg) in enumerate(script):
        if action == "add":
            assert isinstance(arg, Fragment)
            given_tokens += 1
            result = r.add(line, arg, step)
            if isinstance(result, Assembled | Duplicate | Refused):
                assert not returned & set(result.tokens)
                returned.update(result.tokens)
        else:
            assert isinstance(arg, int)
            tokens = r.drop_below(line, arg)
            assert not returned & set(tokens)
            returned.update(tokens)
        for name in (b"A" * 16, b"B" * 16):
            assert r.partial_count(name) <= MAX_PARTIAL
        assert r.held_bytes() <= 2 * MAX_HELD_BYTES_PER_LINE
        assert r.held_tokens() <= 2 * MAX_PARTIAL * MAX_FRAGMENTS * MAX_COPIES
        assert r.held_tokens() + len(returned) == given_tokens  # every token is held or returned once
