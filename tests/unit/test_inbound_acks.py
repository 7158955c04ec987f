"""Receiving circuit frames (issue 11): deferred ACKs of fragments, duplicates and cover.

A relay deletes a frame once it is acknowledged, so a fragment of an entry not yet whole must
not be acknowledged: if the station stopped then, the entry would be lost at that relay. Here a
9-fragment message arrives fragment by fragment in separate batches: nothing is acknowledged
until the batch that completes (and stores) it, which acknowledges every copy that went into it;
a station closed half way receives the whole entry again from the relay's copies; a copy of an
entry already delivered is acknowledged with its own batch; a cover frame is counted, noted as
contact in through its circuit, and acknowledged.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from backchannel.proto import wire
from backchannel.station.relay_link import Delivery
from backchannel.station.station import Station

RELAY = "ws://relay.invalid:1"
PASS = "correct horse battery staple"


def long_message(station_pair: Any, support: Any) -> tuple[str, list[Any]]:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    text = "x" * 29_000
    seq = asyncio.run(a.send(station_pair.inviter_line, text)).seq
    return text, support.wrap(b, a.outbound_frame(lid, seq))


def test_fragments_are_acknowledged_only_with_the_batch_that_stores_their_entry(
    station_pair: Any, support: Any
) -> None:
    b = station_pair.accepter
    text, fragments = long_message(station_pair, support)
    assert len(fragments) == wire.MAX_FRAGMENTS
    for fragment in fragments[:-1]:
        b.receive_batch([fragment])
        assert b.receiver.acks_due == []  # held, not acknowledged
    assert b.inbox() == []
    b.receive_batch([fragments[-1]])
    assert [m.text for m in b.inbox()] == [text]
    assert sorted(d.msg_id for d in b.receiver.acks_due) == sorted(d.msg_id for d in fragments)
    again = fragments[3]  # a copy through another relay, after the entry was delivered
    b.receive_batch([again])
    assert b.receiver.acks_due == [again]
    assert len(b.inbox()) == 1 and b.counters().get("duplicate") == 1


def test_a_station_closed_half_way_gets_the_whole_entry_from_the_relays_copies(
    station_pair: Any, support: Any, tmp_path: Path
) -> None:
    b = station_pair.accepter
    text, fragments = long_message(station_pair, support)
    b.receive_batch(fragments[:5])
    assert b.receiver.acks_due == []
    asyncio.run(b.close())  # (a crash loses the same: nothing of the entry was acknowledged)
    b2 = support.make_offline(Station.open(tmp_path / "bravo", PASS, clock=station_pair.clock))
    try:
        b2.receive_batch(fragments)  # the relay pushes every unacknowledged copy again
        assert [m.text for m in b2.inbox()] == [text]
        assert len(b2.receiver.acks_due) == len(fragments)
    finally:
        asyncio.run(b2.close())


def test_a_cover_frame_is_counted_acknowledged_and_is_contact_in(station_pair: Any, support: Any) -> None:
    b, lid = station_pair.accepter, station_pair.line_id
    (recv_id,) = [row.recv_id for row in b.store.mailboxes() if row.line_id == lid]
    keys = b.sending.keys.receiving(lid, RELAY)  # the peer's sending keys of this circuit
    cover = Delivery(recv_id, os.urandom(16), wire.seal_cover(keys, os.urandom(16)))
    station_pair.clock.advance(5)
    assert b.receive_batch([cover]) == []
    assert b.counters().get("cover_received") == 1
    assert b.receiver.acks_due == [cover]
    (circuit,) = b.line(station_pair.accepter_line).circuits
    assert circuit["last_in"] == station_pair.clock.now()
