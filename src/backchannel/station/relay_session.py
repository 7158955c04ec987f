"""The pieces of a relay link that are not its connection loop: limits, the values it hands
to the station, one connection's state, and the frame helpers (see ``station.relay_link``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from backchannel.errors import BackchannelError, InvalidArgument, ProtocolError, RelayRefused, TransportError
from backchannel.proto import frames
from backchannel.proto.frames import FrameType

if TYPE_CHECKING:
    from backchannel.station.relay_link import RelayLink

BACKOFF_START = 0.05
BACKOFF_MAX = 2.0
#: WebSocket keepalive defaults: a dead connection is noticed within their sum (~10 s).
PING_INTERVAL = 5.0
PING_TIMEOUT = 5.0
#: Incoming WebSocket messages up to this size are read (a DELIVER of a maximal payload
#: fits with a wide margin, in case a relay is configured with a larger limit).
MAX_INCOMING = 4 * frames.MAX_PAYLOAD + 64 * 1024
MAX_RID = 2**32 - 1
#: Acknowledgements waiting to be written, per connection; beyond this the oldest are
#: dropped (the relay pushes an unacknowledged frame again later; the copy is then dropped).
MAX_PENDING_ACKS = 4096


@dataclass(frozen=True)
class ReceiveLimit:
    """How much one link may have handed to the station and not yet seen processed.

    When either bound is reached the link stops reading its socket (TCP pushes back on the
    relay) until the station has processed some: a relay that runs ahead costs only its own
    circuit's latency, and the station's memory for received frames is bounded by the sum
    of these over its links.
    """

    frames: int = 512
    bytes: int = 4 * 1024 * 1024


class ReceiveWindow:
    """Backpressure on one link: frames handed to the station and not yet processed.

    While the window is full the link reads nothing from its socket (TCP pushes back on the
    relay); the station frees room by telling the link a frame was processed.
    """

    def __init__(self, limit: ReceiveLimit | None) -> None:
        self._limit = limit
        self._frames = 0
        self._bytes = 0
        self._room = asyncio.Event()
        self._room.set()

    def processed(self, size: int) -> None:
        self._frames = max(0, self._frames - 1)
        self._bytes = max(0, self._bytes - size)
        self._room.set()

    def wake(self) -> None:
        """Wake a reader waiting for room (its session ended)."""
        self._room.set()

    async def wait_room(self, size: int, usable: Callable[[], bool]) -> bool:
        """Wait until one more frame of ``size`` bytes may be handed over, and count it;
        False if the session ended meanwhile (``usable``)."""
        limit = self._limit
        if limit is not None:
            while self._frames > 0 and (self._frames >= limit.frames or self._bytes + size > limit.bytes):
                self._room.clear()
                await self._room.wait()
                if not usable():
                    return False
            if not usable():
                return False
            self._frames += 1
            self._bytes += size
        return usable()


@dataclass(frozen=True)
class Delivery:
    recv_id: bytes
    msg_id: bytes
    payload: bytes
    #: The link it came through (the station returns its share of the receive limit there).
    link: RelayLink | None = field(default=None, compare=False, repr=False)


#: Returns a 64-byte Ed25519 signature over the message.
Signer = Callable[[bytes], bytes]


@dataclass(eq=False)
class Session:
    """One live WebSocket connection and the requests in flight on it."""

    ws: ClientConnection
    nonce: bytes
    pending: dict[int, asyncio.Future[frames.Frame]] = field(default_factory=dict)
    #: send_id -> the AUTH_SEND of this connection (shared by concurrent first SENDs).
    auth: dict[bytes, asyncio.Task[None]] = field(default_factory=dict)
    #: recv_ids whose SUBSCRIBE was issued on this connection.
    subscribed: set[bytes] = field(default_factory=set)
    #: (recv_id, msg_id) to acknowledge; written by one task, replies not awaited.
    acks: deque[tuple[bytes, bytes]] = field(default_factory=lambda: deque(maxlen=MAX_PENDING_ACKS))
    ack_wake: asyncio.Event = field(default_factory=asyncio.Event)
    alive: bool = True

    def fail_all(self, reason: str) -> None:
        self.alive = False
        for future in self.pending.values():
            if not future.done():
                future.set_exception(TransportError(reason))
        self.pending.clear()
        self.acks.clear()
        self.ack_wake.set()


def decode(message: str | bytes) -> frames.Frame:
    if isinstance(message, str):
        raise ProtocolError("relay sent a text message; relay frames are binary")
    return frames.decode(message, MAX_INCOMING)


def check_id(value: bytes, name: str) -> None:
    if len(value) != frames.ID_LEN:
        raise InvalidArgument(f"{name} must be {frames.ID_LEN} bytes, got {len(value)}")


def registration(kind: FrameType, mailbox_id: bytes, signature: bytes) -> Callable[[int], frames.Frame]:
    """The request that proves a capability, for any request id; ValueError if it cannot be encoded."""

    def build(rid: int) -> frames.Frame:
        if kind is FrameType.SUBSCRIBE:
            return frames.Subscribe(rid, mailbox_id, signature)
        return frames.AuthSend(rid, mailbox_id, signature)

    frames.encode(build(1))  # a signature of the wrong length fails here, not on the wire
    return build


def retryable(exc: BackchannelError) -> bool:
    """May the same request succeed if simply sent again on this connection?"""
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, RelayRefused) and exc.relay_code == frames.RelayErrorCode.INTERNAL


def swallow(task: asyncio.Task[None]) -> None:
    """Mark a shared task's exception as retrieved (its awaiters see it; nobody else must)."""
    if not task.cancelled():
        task.exception()


def require_positive(**values: float) -> None:
    """The link's timeouts and intervals: each must be a positive number of seconds."""
    for name, value in values.items():
        if not value > 0:
            raise InvalidArgument(f"{name} must be greater than 0, not {value!r}")


async def write_acks(session: Session, rid: Callable[[], int]) -> None:
    """Write the connection's queued ACKs in order (one task per connection); their replies
    are ignored by the reader (nobody waits), and a dead connection ends it."""
    while session.alive:
        await session.ack_wake.wait()
        session.ack_wake.clear()
        while session.acks and session.alive:
            recv_id, msg_id = session.acks.popleft()
            try:
                await session.ws.send(frames.encode(frames.Ack(rid(), recv_id, msg_id)))
            except (ConnectionClosed, OSError):
                return


_F = TypeVar("_F", bound=frames.Frame)


def expect(reply: frames.Frame, kind: type[_F], request: str) -> _F:
    """The relay's reply to ``request`` if it is of the kind the request calls for."""
    if not isinstance(reply, kind):
        raise ProtocolError(f"relay answered {request} with {type(reply).__name__}")
    return reply


async def authorised(auth: asyncio.Task[None], shown_url: str) -> None:
    """Wait for a shared AUTH_SEND without letting one caller's cancellation end it."""
    try:
        await asyncio.shield(auth)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if auth.cancelled() and (current is None or current.cancelling() == 0):
            raise TransportError(f"connection to relay {shown_url} lost") from None
        raise
