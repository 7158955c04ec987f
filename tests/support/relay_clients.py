"""Hostile relay clients for the adversarial tests: the real wire protocol, spoken by hand.

``RawClient`` opens a WebSocket to a real relay (``support.relays``), reads its WELCOME and
sends whatever frames a test builds, including ones a station never would; ``Mailbox``
makes and uses mailboxes with fresh keys. ``rss_mib`` reads a process's resident memory
from ``/proc``, so a test can hold a relay to a memory bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect

from backchannel.proto import frames
from backchannel.proto.frames import FrameType

from support.relays import public


def binary(message: str | bytes) -> bytes:
    assert isinstance(message, bytes), "the relay sends only binary messages"
    return message


@dataclass
class Mailbox:
    recv_id: bytes
    send_id: bytes
    recv_key: Ed25519PrivateKey
    send_key: Ed25519PrivateKey


@dataclass
class RawClient:
    """One connection speaking the relay protocol by hand (request ids are its own)."""

    ws: ClientConnection
    #: The WELCOME nonce, or None when the relay's first frame was something else (``first``).
    nonce: bytes | None
    first: frames.Frame
    _rids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> RawClient:
        """Connect (``kwargs`` go to ``websockets.connect``, e.g. ``local_addr``) and read the
        relay's first frame: WELCOME, or the ERROR that refuses this connection."""
        ws = await connect(url, compression=None, max_size=2**22, open_timeout=10, **kwargs)
        first = frames.decode(binary(await asyncio.wait_for(ws.recv(), 10)), 2**22)
        nonce = first.nonce if isinstance(first, frames.Welcome) else None
        return cls(ws, nonce, first)

    def rid(self) -> int:
        return next(self._rids)

    async def request(self, frame: frames.Frame, timeout: float = 10.0) -> frames.Frame:
        """Send one frame; return the next frame that is not a DELIVER."""
        await self.ws.send(frames.encode(frame))
        async with asyncio.timeout(timeout):
            while True:
                reply = frames.decode(binary(await self.ws.recv()), 2**22)
                if not isinstance(reply, frames.Deliver):
                    return reply

    def sign(self, key: Ed25519PrivateKey, kind: FrameType, mailbox_id: bytes) -> bytes:
        assert self.nonce is not None
        return key.sign(frames.auth_message(self.nonce, kind, mailbox_id))

    async def create(self) -> Mailbox | frames.Error:
        """CREATE a mailbox with fresh keys: the mailbox, or the relay's ERROR."""
        recv_key, send_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        reply = await self.request(frames.Create(self.rid(), public(recv_key), public(send_key)))
        if isinstance(reply, frames.Error):
            return reply
        assert isinstance(reply, frames.Created), reply
        return Mailbox(reply.recv_id, reply.send_id, recv_key, send_key)

    async def subscribe(self, box: Mailbox) -> frames.Frame:
        sig = self.sign(box.recv_key, FrameType.SUBSCRIBE, box.recv_id)
        return await self.request(frames.Subscribe(self.rid(), box.recv_id, sig))

    async def auth_send(self, box: Mailbox) -> frames.Frame:
        sig = self.sign(box.send_key, FrameType.AUTH_SEND, box.send_id)
        return await self.request(frames.AuthSend(self.rid(), box.send_id, sig))

    async def fill(self, box: Mailbox, count: int, size: int, tag: bytes = b"") -> int:
        """AUTH_SEND then ``count`` pipelined SENDs of distinct ``size``-byte payloads; how
        many the relay answered STORED."""
        assert isinstance(await self.auth_send(box), frames.Ok)
        for i in range(count):
            payload = (tag + b"%08d" % i).ljust(size, b".")
            await self.ws.send(frames.encode(frames.Send(self.rid(), box.send_id, payload)))
        stored = 0
        async with asyncio.timeout(60):
            for _ in range(count):
                reply = frames.decode(binary(await self.ws.recv()), 2**22)
                stored += isinstance(reply, frames.Stored)
        return stored

    async def close(self) -> None:
        await self.ws.close()


def rss_mib(pid: int) -> float:
    """Resident memory of a live process, in MiB (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def sample_peak(read: Callable[[], float], stop: asyncio.Event, every: float = 0.05) -> float:
    """The highest value ``read`` gives, sampled until ``stop`` is set."""
    peak = read()
    while not stop.is_set():
        peak = max(peak, read())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    return max(peak, read())
