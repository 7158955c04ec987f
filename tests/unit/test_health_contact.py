"""A relay cannot fake contact on a circuit with bytes of its own (THREAT_MODEL §2, "Availability").

Health counts only copies that pass the envelope's authentication: forged, tampered,
misaddressed or garbage DELIVERs through a circuit's link leave its *contact in* untouched,
and a genuine copy sets it. (Replays of genuine frames do count as contact, as the threat
model says; they are not the relay's own bytes.)
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import Any

from backchannel.station.relay_link import Delivery, RelayLink

RELAY = "ws://relay.invalid:1"


def last_in(station: Any, line: str) -> Any:
    (circuit,) = station.line(line).circuits
    return circuit["last_in"]


def test_only_an_authenticated_copy_gives_a_circuit_contact(station_pair: Any, support: Any) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    seq = asyncio.run(a.send(station_pair.inviter_line, "genuine")).seq
    genuine = a.outbound_frame(lid, seq)
    with sqlite3.connect(b.home / "station.db") as db:
        (recv_id,) = db.execute("SELECT recv_id FROM mailboxes WHERE line_id = ?", (lid,)).fetchone()
    link = RelayLink(RELAY, asyncio.Queue[Delivery]())
    link.subscribe(recv_id, lambda m: bytes(64))
    before = last_in(b, station_pair.accepter_line)
    tampered = bytearray(genuine)
    tampered[-7] ^= 0x01
    forged = [bytes(tampered), genuine[:4] + os.urandom(16) + genuine[20:], os.urandom(400), genuine[:-1]]
    station_pair.clock.advance(5)
    b.receive_batch([Delivery(recv_id, os.urandom(16), f, link) for f in forged])
    assert sum(b.counters().values()) == len(forged)
    assert last_in(b, station_pair.accepter_line) == before
    station_pair.clock.advance(5)
    b.receive_batch([Delivery(recv_id, os.urandom(16), genuine, link)])
    assert last_in(b, station_pair.accepter_line) == station_pair.clock.now()
