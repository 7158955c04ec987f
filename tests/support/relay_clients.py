"""Hostile relay clients for the adversarial tests: the real wire protocol, spoken by hand.

``RawClient`` opens a WebSocket to a real relay (``support.relays``), reads its WELCOME and
sends whatever frames a test builds, including ones a station never would; ``Mailbox``
makes and uses mailboxes with fresh keys. ``rss_mib`` reads a process's resident memory
from ``/proc``, so a test can hold a relay to a memory bound.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
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


async def full_mailboxes(url: str, count: int, frames_each: int, size: int) -> list[Mailbox]:
    """``count`` new mailboxes on the relay at ``url``, each holding ``frames_each`` distinct
    frames of ``size`` bytes (made and filled over one connection, closed after)."""
    filler = await RawClient.open(url)
    boxes = []
    for n in range(count):
        box = await filler.create()
        assert not isinstance(box, frames.Error), box
        assert await filler.fill(box, frames_each, size, tag=b"%d-" % n) == frames_each
        boxes.append(box)
    await filler.close()
    return boxes


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


# ---- below the WebSocket layer: raw TCP, for attacks a WebSocket library would not make ----


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def tcp_open(url: str, local_host: str = "127.0.0.1") -> Stream:
    """A bare TCP connection to a relay's port from ``local_host``, sending nothing yet."""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port), local_addr=(local_host, 0))


async def upgraded(url: str, local_host: str = "127.0.0.1") -> Stream:
    """A TCP connection that completed the WebSocket handshake by hand (the WELCOME that
    follows is left unread), for writing raw frames."""
    reader, writer = await tcp_open(url, local_host)
    host = url.removeprefix("ws://")
    key = base64.b64encode(b"0123456789abcdef").decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b" 101 " in head.split(b"\r\n", 1)[0], head
    return reader, writer


def masked_ping(payload: bytes) -> bytes:
    """A client's WebSocket PING control frame (masked with a fixed key: it is not secret)."""
    assert len(payload) <= 125
    mask = b"\x01\x02\x03\x04"
    return bytes([0x89, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Did the relay close (or reset) this TCP connection within ``timeout``? Reads and drops
    whatever arrives meanwhile."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def socket_count(pid: int) -> int:
    """Open sockets of a live process (listening ones included), from ``/proc``."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count
