"""Fragments of an incomplete entry stay unacknowledged at every honest relay, whatever is pushed.

The station acknowledges a fragment of an incomplete entry only once the whole entry is stored
(PROTOCOL §7.1, §10.2): until then the relay keeps it, so a crash of the station loses nothing.
Two ways broke that rule, both through the cap of MAX_COPIES (8) tokens kept per chunk:

- an honest relay redelivers what is not acknowledged every ``redeliver_seconds`` (30 s): each
  redelivery of the *same* frame was kept as one more copy, and the ninth was acknowledged at
  once, deleting the frame at the relay while the entry was still incomplete (after about four
  minutes of waiting for a slow fragment);
- a hostile relay (no keys) that holds a copy of the chunk pushes it eight times under made-up
  message ids; the honest relay's copy then came ninth and was acknowledged at once.

In both cases a crash before the entry completed lost the fragment at the honest relay: the entry
could then come back only end to end. Now the reassembly keeps one copy per circuit (mailbox): a
frame pushed again is absorbed (its held twin's ACK covers it), another message of the same
circuit for a chunk already held is a duplicate, and every circuit's own copy is kept.
"""

from __future__ import annotations

from backchannel.proto import wire
from backchannel.proto.reassembly import Assembled, Duplicate, Partial, Reassembly, Refused
from backchannel.proto.wire import CHUNK, Fragment
from backchannel.station.relay_link import Delivery

from support.figures import figure

LINE = b"L" * 16
HONEST, HOSTILE = b"X" * 16, b"Y" * 16  # the two mailboxes (circuits) of the line


def fragments(seq: int) -> list[Fragment]:
    data = bytes((seq * 5 + i) % 251 for i in range(2 * CHUNK + 17))
    chunks = wire.split(data)
    return [Fragment(seq, i, len(chunks), c) for i, c in enumerate(chunks)]


def delivery(recv_id: bytes, msg_id: bytes) -> Delivery:
    return Delivery(recv_id, msg_id, b"frame of " + msg_id)


def add(r: Reassembly[Delivery], fragment: Fragment, token: Delivery) -> object:
    return r.add(LINE, fragment, token, source=token.recv_id)


def acked_now(result: object) -> list[Delivery]:
    if isinstance(result, Duplicate | Refused):
        return list(result.tokens)
    return []


def test_an_honest_relay_redelivering_an_unacknowledged_fragment_never_gets_it_acknowledged_early() -> None:
    r: Reassembly[Delivery] = Reassembly()
    first, second, third = fragments(5)
    held = delivery(HONEST, b"m0" * 8)
    early: list[Delivery] = []
    for _ in range(20):  # ten minutes of redeliveries every 30 s while the rest is slow to come
        early += acked_now(add(r, first, Delivery(held.recv_id, held.msg_id, held.payload)))
    early += acked_now(add(r, second, delivery(HONEST, b"m1" * 8)))
    figure("honest fragments acknowledged before their entry was whole (redeliveries)", len(early), "frames")
    assert not [d for d in early if d.recv_id == HONEST]
    whole = add(r, third, delivery(HONEST, b"m2" * 8))
    assert isinstance(whole, Assembled)
    assert {d.msg_id for d in whole.tokens} == {b"m0" * 8, b"m1" * 8, b"m2" * 8}


def test_a_hostile_relay_pushing_copies_cannot_get_the_honest_copy_acknowledged_early() -> None:
    r: Reassembly[Delivery] = Reassembly()
    first, second, third = fragments(9)
    early: list[Delivery] = []
    for n in range(12):  # the hostile relay's copy of chunk 0 under made-up message ids
        early += acked_now(add(r, first, delivery(HOSTILE, bytes([n]) * 16)))
    honest = [delivery(HONEST, bytes([100 + i]) * 16) for i in range(3)]
    early += acked_now(add(r, first, honest[0]))
    early += acked_now(add(r, second, honest[1]))
    honest_early = [d for d in early if d.recv_id == HONEST]
    figure(
        "honest fragments acknowledged before their entry was whole (hostile copies)",
        len(honest_early),
        "frames",
    )
    assert not honest_early
    assert isinstance(r.add(LINE, first, honest[0], source=HONEST), Duplicate)  # its redelivery: absorbed
    whole = add(r, third, honest[2])
    assert isinstance(whole, Assembled)
    assert set(honest) <= set(whole.tokens)
    assert isinstance(add(r, second, honest[1]), Duplicate)  # after: a plain duplicate


def test_partial_is_what_a_first_copy_gets() -> None:
    r: Reassembly[Delivery] = Reassembly()
    assert isinstance(add(r, fragments(3)[0], delivery(HONEST, b"a" * 16)), Partial)
