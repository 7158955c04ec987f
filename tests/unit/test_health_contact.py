"""A relay cannot fake contact on a circuit with bytes of its own (THREAT_MODEL §2, "Availability").

Health counts only copies that pass authentication: forged, tampered, misaddressed or garbage
DELIVERs through a circuit's link leave its *contact in* untouched, and a genuine copy sets it.
(Issue 11: what a relay holds is a circuit frame; the forgeries are now made at that layer:
a tampered frame, a frame under another line's keys, garbage of the right size, a cut frame.)
(Replays of genuine frames do count as contact, as the threat model says; they are not the
relay's own bytes.)
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import Any

from backchannel.proto import wire
from backchannel.station.relay_link import Delivery, RelayLink

RELAY = "ws://relay.invalid:1"


def last_in(station: Any, line: str) -> Any:
    (circuit,) = station.line(line).circuits
    return circuit["last_in"]


def test_only_an_authenticated_copy_gives_a_circuit_contact(station_pair: Any, support: Any) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    seq = asyncio.run(a.send(station_pair.inviter_line, "genuine")).seq
    envelope = a.outbound_frame(lid, seq)
    (genuine,) = [d.payload for d in support.wrap(b, envelope)]
    with sqlite3.connect(b.home / "station.db") as db:
        (recv_id,) = db.execute("SELECT recv_id FROM mailboxes WHERE line_id = ?", (lid,)).fetchone()
    link = RelayLink(RELAY, asyncio.Queue[Delivery]())
    link.subscribe(recv_id, lambda m: bytes(64))
    before = last_in(b, station_pair.accepter_line)
    tampered = bytearray(genuine)
    tampered[-7] ^= 0x01
    other_line = wire.seal_fragments(wire.circuit_keys(os.urandom(32), RELAY), seq, envelope)[0]
    forged = [bytes(tampered), other_line, os.urandom(wire.FRAME_SIZE), genuine[:-1]]
    station_pair.clock.advance(5)
    b.receive_batch([Delivery(recv_id, os.urandom(16), f, link) for f in forged])
    assert sum(b.counters().values()) == len(forged)
    assert last_in(b, station_pair.accepter_line) == before
    station_pair.clock.advance(5)
    b.receive_batch([Delivery(recv_id, os.urandom(16), genuine, link)])
    assert last_in(b, station_pair.accepter_line) == station_pair.clock.now()
