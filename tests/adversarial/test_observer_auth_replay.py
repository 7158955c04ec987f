"""A network observer replays a relay authorisation it captured on another connection.

Without TLS an observer reads a station's SUBSCRIBE and AUTH_SEND frames, signatures included
(THREAT_MODEL §1). Each signature covers the relay's fresh per-connection nonce from WELCOME
(PROTOCOL §3.3), so the captured bytes are worth nothing on any other connection: the relay
answers ``AUTH``, and the victim's own connection keeps its subscription and its frames.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from backchannel.proto import frames
from backchannel.proto.frames import FrameType, RelayErrorCode

from support.figures import figure
from support.relay_clients import Mailbox, RawClient, binary
from support.relays import run, start_relay

REPLAYS = 8


def test_a_captured_authorisation_replayed_on_another_connection_is_refused(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    try:
        refused, nonces = run(_attack(relay.url))
    finally:
        relay.stop()
    figure("captured SUBSCRIBE/AUTH_SEND frames replayed on fresh connections", 2 * REPLAYS, "frames")
    figure("replays refused with AUTH", refused, "frames")
    assert refused == 2 * REPLAYS
    assert len(nonces) == REPLAYS + 1  # every connection got a nonce of its own


async def _attack(url: str) -> tuple[int, set[bytes]]:
    victim = await RawClient.open(url)
    box = await victim.create()
    assert isinstance(box, Mailbox)
    # What the observer captures off the wire: the victim's exact authorisation frames.
    subscribe = frames.Subscribe(41, box.recv_id, victim.sign(box.recv_key, FrameType.SUBSCRIBE, box.recv_id))
    auth_send = frames.AuthSend(42, box.send_id, victim.sign(box.send_key, FrameType.AUTH_SEND, box.send_id))
    assert await victim.request(subscribe) == frames.Ok(41)
    assert await victim.request(auth_send) == frames.Ok(42)
    assert victim.nonce is not None
    nonces = {victim.nonce}
    refused = 0
    try:
        for _ in range(REPLAYS):
            thief = await RawClient.open(url)
            assert thief.nonce is not None
            nonces.add(thief.nonce)
            for captured in (subscribe, auth_send):
                reply = await thief.request(captured)
                refused += isinstance(reply, frames.Error) and reply.code == RelayErrorCode.AUTH
            # Nor did the replayed AUTH_SEND open the mailbox to this connection.
            reply = await thief.request(frames.Send(43, box.send_id, b"forged"))
            assert isinstance(reply, frames.Error) and reply.code == RelayErrorCode.NOT_AUTHORISED
            await thief.close()
        # The victim's subscription is untouched: its own SEND is stored and comes back to it.
        await victim.ws.send(frames.encode(frames.Send(44, box.send_id, b"genuine")))
        seen: set[type] = set()
        async with asyncio.timeout(10):
            while seen != {frames.Stored, frames.Deliver}:
                frame = frames.decode(binary(await victim.ws.recv()), 2**22)
                assert not isinstance(frame, frames.Deliver) or frame.payload == b"genuine"
                seen.add(type(frame))
    finally:
        await victim.close()
    return refused, nonces
