"""A station cut off from relays, for in-process tests of the station without sockets.

Mailboxes are made up locally and links never start; frames are handed to
``Station.receive_batch`` by the test as if a relay had pushed them.
"""

from __future__ import annotations

import os

from backchannel.station.station import Station


def make_offline(station: Station) -> Station:
    links = station.links

    async def new_mailbox(url: str) -> tuple[bytes, bytes, bytes, bytes]:
        return os.urandom(16), os.urandom(32), os.urandom(16), os.urandom(32)

    def subscribe(url: str, recv_id: bytes, seed: bytes, line_id: bytes) -> None:
        links.note_mailbox(recv_id, url, line_id)

    def add_sender(line_id: bytes, url: str, send_id: bytes, seed: bytes) -> None:
        links.note_circuit(line_id, url, send_id)

    for row in station.store.mailboxes() + station.store.mailboxes(retired=True):
        links.note_mailbox(row.recv_id, row.url, row.line_id)  # (a station reopened)
    links.new_mailbox = new_mailbox  # type: ignore[method-assign]
    links.subscribe = subscribe  # type: ignore[method-assign]
    links.add_sender = add_sender  # type: ignore[method-assign]
    return station
