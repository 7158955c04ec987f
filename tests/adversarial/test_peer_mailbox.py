"""The other party, holding a send capability, tries to read or delete the station's frames.

The invitation and the hello give each station the send capability (send id and send key) of
the other's inbound mailboxes, never their receive key (THREAT_MODEL §3). Here the peer uses
what it holds against a real relay: it subscribes with the send key (to the send id, and to
the receive id, as if that leaked), and acknowledges the stored frames by their message ids
to make the relay delete them. Every attempt is refused and the owner then receives every
frame, none deleted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from backchannel.proto import frames
from backchannel.proto.frames import FrameType, RelayErrorCode
from backchannel.relay.mailbox import message_id

from support.figures import figure
from support.relay_clients import Mailbox, RawClient, binary
from support.relays import run, start_relay

FRAMES = 5


def test_a_send_capability_neither_reads_nor_deletes_the_stations_frames(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    try:
        refused, received = run(_attack(relay.url))
    finally:
        relay.stop()
    figure("the peer's subscribe and delete attempts refused", refused, "requests")
    figure("frames the owner still received afterwards", received, "frames")
    assert refused == 2 + 2 * FRAMES
    assert received == FRAMES


async def _attack(url: str) -> tuple[int, int]:
    owner = await RawClient.open(url)
    box = await owner.create()
    assert isinstance(box, Mailbox)
    await owner.close()
    payloads = [b"frame %d for the station" % i for i in range(FRAMES)]

    peer = await RawClient.open(url)
    refused = 0
    try:
        assert isinstance(await peer.auth_send(box), frames.Ok)
        for i, payload in enumerate(payloads):
            assert isinstance(await peer.request(frames.Send(100 + i, box.send_id, payload)), frames.Stored)
        for mailbox_id in (box.send_id, box.recv_id):
            sig = peer.sign(box.send_key, FrameType.SUBSCRIBE, mailbox_id)
            reply = await peer.request(frames.Subscribe(peer.rid(), mailbox_id, sig))
            refused += isinstance(reply, frames.Error) and reply.code == RelayErrorCode.AUTH
        for payload in payloads:  # message ids are public: the first 16 bytes of SHA-256
            for mailbox_id in (box.recv_id, box.send_id):
                reply = await peer.request(frames.Ack(peer.rid(), mailbox_id, message_id(payload)))
                refused += isinstance(reply, frames.Error) and reply.code == RelayErrorCode.NOT_AUTHORISED
    finally:
        await peer.close()

    owner = await RawClient.open(url)
    received: set[bytes] = set()
    try:
        sig = owner.sign(box.recv_key, FrameType.SUBSCRIBE, box.recv_id)
        await owner.ws.send(frames.encode(frames.Subscribe(owner.rid(), box.recv_id, sig)))
        async with asyncio.timeout(10):
            while len(received) < FRAMES:
                frame = frames.decode(binary(await owner.ws.recv()), 2**22)
                assert not isinstance(frame, frames.Error), frame
                if isinstance(frame, frames.Deliver):
                    received.add(frame.payload)
    finally:
        await owner.close()
    assert received == set(payloads)
    return refused, len(received)
