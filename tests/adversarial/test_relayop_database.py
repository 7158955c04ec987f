"""A relay operator with a copy of its own database tries to use a station's mailbox.

The relay stores, per mailbox, only the two public Ed25519 keys that CREATE gave it
(THREAT_MODEL §2): nothing in its database or files is a private key. So the operator,
reading every 32-byte value of every mailbox row and trying it as a signing key, still cannot
subscribe to the mailbox (read the station's frames) or authorise a send into it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from backchannel.proto import frames
from backchannel.proto.frames import FrameType, RelayErrorCode

from support.figures import figure
from support.relay_clients import Mailbox, RawClient
from support.relays import public, run, start_relay

MAILBOXES = 3


def _seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def test_the_relay_database_holds_only_public_keys_and_opens_no_mailbox(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    try:
        boxes = run(_create(relay.url))
        relay.stop()
        files = b"".join(p.read_bytes() for p in relay.directory.iterdir() if p.is_file())
        with sqlite3.connect(relay.db_path) as db:
            rows = db.execute("SELECT recv_id, send_id, recv_key, send_key FROM mailboxes").fetchall()
        relay.restart()
        tried, refused = run(_use_the_copy(relay.url, rows))
    finally:
        relay.stop()
    for box in boxes:
        for key in (box.recv_key, box.send_key):
            assert public(key) in files  # the relay keeps the public key ...
            assert _seed(key) not in files  # ... and nothing of the private one
    figure("authorisations signed with the public keys of the relay's mailbox rows", tried, "requests")
    figure("of them refused with AUTH", refused, "requests")
    assert len(rows) == MAILBOXES
    assert tried == 2 * MAILBOXES * 2  # two ids' worth of keys per row, each tried for both sides
    assert refused == tried


async def _create(url: str) -> list[Mailbox]:
    client = await RawClient.open(url)
    boxes = []
    try:
        for i in range(MAILBOXES):
            box = await client.create()
            assert isinstance(box, Mailbox)
            assert isinstance(await client.auth_send(box), frames.Ok)
            stored = await client.request(frames.Send(900 + i, box.send_id, b"f%d" % i))
            assert isinstance(stored, frames.Stored)
            boxes.append(box)
    finally:
        await client.close()
    return boxes


async def _use_the_copy(url: str, rows: list[tuple[bytes, bytes, bytes, bytes]]) -> tuple[int, int]:
    client = await RawClient.open(url)
    tried = refused = 0
    try:
        for recv_id, send_id, recv_key, send_key in rows:
            for candidate in (bytes(recv_key), bytes(send_key)):
                key = Ed25519PrivateKey.from_private_bytes(candidate)
                for kind, mailbox_id in ((FrameType.SUBSCRIBE, recv_id), (FrameType.AUTH_SEND, send_id)):
                    sig = client.sign(key, kind, bytes(mailbox_id))
                    frame: frames.Frame = (
                        frames.Subscribe(client.rid(), bytes(mailbox_id), sig)
                        if kind is FrameType.SUBSCRIBE
                        else frames.AuthSend(client.rid(), bytes(mailbox_id), sig)
                    )
                    reply = await client.request(frame)
                    tried += 1
                    refused += isinstance(reply, frames.Error) and reply.code == RelayErrorCode.AUTH
    finally:
        await client.close()
    return tried, refused
