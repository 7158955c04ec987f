"""A relay cannot pass its flood off as another relay's (THREAT_MODEL §2).

A DELIVER counts (and is acknowledged) only for a mailbox the station subscribed on that very
relay's link. Here a genuine frame of the line arrives through a link that did not subscribe
to the mailbox it names (as a relay replaying, for a mailbox on another relay, what it saw):
it is refused and counted ``unsubscribed_delivery`` and delivers nothing; the same frame
through the link that subscribed is delivered.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import Any

from backchannel.station.relay_link import Delivery, RelayLink


def test_a_delivery_for_a_mailbox_not_subscribed_on_that_link_is_refused(
    station_pair: Any, support: Any
) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    seq = asyncio.run(a.send(station_pair.inviter_line, "through the right relay only")).seq
    (frame,) = [d.payload for d in support.wrap(b, a.outbound_frame(lid, seq))]  # its circuit frame
    with sqlite3.connect(b.home / "station.db") as db:
        (recv_id,) = db.execute("SELECT recv_id FROM mailboxes WHERE line_id = ?", (lid,)).fetchone()
    honest = RelayLink("ws://honest.invalid:1", asyncio.Queue[Delivery]())
    honest.subscribe(recv_id, lambda m: bytes(64))
    hostile = RelayLink("ws://hostile.invalid:1", asyncio.Queue[Delivery]())
    assert not hostile.receives(recv_id) and honest.receives(recv_id)

    b.receive_batch([Delivery(recv_id, os.urandom(16), frame, hostile)])
    assert b.counters().get("unsubscribed_delivery") == 1
    assert b.inbox() == []
    b.receive_batch([Delivery(recv_id, os.urandom(16), frame, honest)])
    assert [m.text for m in b.inbox()] == ["through the right relay only"]
