"""A station cut off from relays, for in-process tests of the station without sockets.

Mailboxes are made up locally and links never start; frames are handed to
``Station.receive_batch`` by the test as if a relay had pushed them: :func:`wrap` turns an
envelope into the circuit frames (PROTOCOL §7.1) a relay would deliver for it.
"""

from __future__ import annotations

import os

from backchannel.errors import RemoteError
from backchannel.proto import envelope, wire
from backchannel.proto.envelope import Kind
from backchannel.station.relay_link import Delivery
from backchannel.station.station import Station

RELAY = "ws://relay.invalid:1"


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


def wrap(station: Station, data: bytes, url: str = RELAY, line_id: bytes | None = None) -> list[Delivery]:
    """The deliveries that carry envelope ``data`` to ``station`` through ``url``: its circuit
    frames in the station's mailbox of that line, under the keys the peer's sender uses (a
    hello under the hello keys). Bytes that are no envelope of a line of the station are
    wrapped for ``line_id`` (default: its only line), as a peer with a bug (or a thief of the
    line keys) would send them; empty bytes go into that mailbox as they are (a relay's own)."""
    try:
        header: envelope.Header | None = envelope.parse(data).header
    except RemoteError:
        header = None
    boxes = {row.line_id: row.recv_id for row in station.store.mailboxes()}
    if header is not None and header.line_id in boxes:
        line_id = header.line_id
    if line_id is None:
        assert len(boxes) == 1, "which line's mailbox?"
        line_id = next(iter(boxes))
    if not data:
        return [Delivery(boxes[line_id], os.urandom(16), data)]
    keyring, live = station.sending.keys, station.mirror.get(line_id)
    hello = live is None or (header is not None and header.kind is Kind.HELLO)
    keys = keyring.hello(line_id, url) if hello else keyring.receiving(line_id, url)
    assert keys is not None
    seq = header.seq if header is not None else live.state.delivered_upto + 1 if live else 1
    return [Delivery(boxes[line_id], os.urandom(16), f) for f in wire.seal_fragments(keys, seq, data)]
