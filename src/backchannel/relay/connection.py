"""Per-connection state of the relay: what it proved, its budgets, and its ordered outbox.

Theory of operation
-------------------
Replies are produced in three places: the reader (immediate answers), the group committer
(STORED/OK after a commit) and the push pump (DELIVER). All of them append to one outbox
per connection, and one flusher task writes the outbox to the socket in order. So no
producer ever blocks on a slow client, and the order "OK to SUBSCRIBE, then DELIVERs" holds.

Memory per connection is bounded three ways, so that one client cannot exhaust a relay:

- *Requests*: each takes a slot (``MAX_IN_FLIGHT``) given back when its reply has been
  written, and SEND payloads waiting for their commit count against ``max_in_flight_bytes``.
  A client over either stops being read from, and TCP pushes back on it.
- *Pushes*: a pump reserves room in the send buffer (``max_send_buffer_bytes``) before it
  reads frames from the store, so DELIVERs queued for a slow reader never exceed it; the pump
  waits for room instead.
- *Slow readers*: every write to the socket must complete within ``send_timeout``; a client
  that takes nothing for that long is dropped (``SlowReader``), not buffered for.

Both byte budgets are also counted per source address (:class:`AddressBudget`), because a
client that opens many connections, each under its own limits and each reading just enough
never to time out, would otherwise hold connections x budget. An address over its budget waits
exactly as one connection over its own does; a connection with nothing queued or held may
still take one frame, so every connection makes progress and the overshoot is bounded by one
frame per connection.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from backchannel.proto import frames

#: Requests a single connection may have unanswered at once.
MAX_IN_FLIGHT = 2048


class SlowReader(Exception):
    """The client took none of what was sent to it for ``send_timeout`` seconds."""


class AddressBudget:
    """Bytes that all connections from one source address hold together: queued for them
    (replies and DELIVERs, plus room promised to pumps) and read from them but not committed.

    Freed room wakes only the connections that wait for it (``waiting``, in the order they
    began to wait) and stops at the first one the address's budget cannot serve: a relay
    behind a reverse proxy sees every station on one address, and waking all of them for
    every frame written was O(connections) per frame (PERFORMANCE.md §5.2)."""

    def __init__(self, send_buffer: int = sys.maxsize, in_flight_bytes: int = sys.maxsize) -> None:
        self.send_buffer = send_buffer
        self.in_flight_bytes = in_flight_bytes
        self.buffered = 0
        self.held = 0
        self.members: set[RelayConnection] = set()
        #: Connections with a waiter (a pump for room, or the reader for in-flight bytes).
        self.waiting: dict[RelayConnection, None] = {}
        #: Waiters woken so far (their wait satisfied), for the tests that bound wake-ups.
        self.wakeups = 0

    def freed(self) -> None:
        """Room came back: serve the waiting connections in order, until one is refused for
        the address's budget (those behind it would be refused too)."""
        if not self.waiting:
            return
        for conn in list(self.waiting):
            if not conn.grant():
                break


class RelayConnection:
    """One client connection: its nonce, proven capabilities, budgets and outbox."""

    def __init__(
        self,
        ws: ServerConnection,
        nonce: bytes,
        *,
        address: str = "",
        may_create: bool = True,
        send_buffer: int = 4 * 1024 * 1024,
        in_flight_bytes: int = 8 * 1024 * 1024,
        send_timeout: float = 30.0,
        budget: AddressBudget | None = None,
    ) -> None:
        self.ws = ws
        self.nonce = nonce
        #: The client's source address (per-address limits are counted on it).
        self.address = address
        #: Did the handshake present the relay's access token (or does the relay need none)?
        self.may_create = may_create
        #: CREATEs accepted on this connection.
        self.creates = 0
        #: send_id -> recv_id for every AUTH_SEND that verified on this connection.
        self.senders: dict[bytes, bytes] = {}
        #: recv_ids whose receive key was proven (by SUBSCRIBE) on this connection.
        self.receivers: set[bytes] = set()
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.send_buffer = send_buffer
        self.send_timeout = send_timeout
        self._max_held = in_flight_bytes
        self._held = 0
        self._out: deque[tuple[bytes, bool]] = deque()
        self._out_bytes = 0  # queued in _out, plus the frame being written
        self._reserved = 0  # room promised to pumps that are reading the store
        self._ready = asyncio.Event()
        #: Pumps waiting for send-buffer room, in order: (future of the rows granted, rows,
        #: frame size). Room is handed over when granted, so one release wakes only the
        #: pumps it can serve (not every pump of the connection to race for it).
        self._room_waiters: deque[tuple[asyncio.Future[int], int, int]] = deque()
        #: The reader, while uncommitted payloads fill the in-flight budget.
        self._read_waiter: asyncio.Future[None] | None = None
        #: What this connection's address holds in all (a private, unlimited one if none).
        self.budget = budget if budget is not None else AddressBudget()
        self.budget.members.add(self)

    def leave(self) -> None:
        """The connection is gone: what its outbox still counted goes back to the address."""
        self.budget.members.discard(self)
        self.budget.waiting.pop(self, None)
        self.budget.buffered -= self._out_bytes
        self._out_bytes = 0
        self._out.clear()
        self.budget.freed()

    @property
    def backlogged(self) -> bool:
        """True while frames wait to be written (in the outbox or the socket's buffer)."""
        if self._out:
            return True
        transport = self.ws.transport
        return transport is not None and transport.get_write_buffer_size() > 0

    # ---- the outbox --------------------------------------------------------------------

    def reply(self, frame: frames.Frame) -> None:
        """Queue the one answer to a request (gives its slot back once written)."""
        self._queue(frames.encode(frame), True)

    def push(self, frame: frames.Frame) -> None:
        """Queue a frame the relay sends on its own (Welcome, Deliver)."""
        self._queue(frames.encode(frame), False)

    def _queue(self, data: bytes, answers_request: bool) -> None:
        self._out.append((data, answers_request))
        self._out_bytes += len(data)
        self.budget.buffered += len(data)
        self._ready.set()

    def has_room(self, size: int) -> bool:
        """May a frame of ``size`` bytes be pushed now without passing the send buffer, this
        connection's or its address's?"""
        return (
            self._out_bytes + self._reserved + size <= self.send_buffer
            and self.budget.buffered + size <= self.budget.send_buffer
        )

    def _may_take(self, frame_size: int) -> bool:
        # (An empty buffer always takes one frame, however small it was configured.)
        return self.has_room(frame_size) or self._out_bytes + self._reserved == 0

    def _take(self, rows: int, frame_size: int) -> int:
        free = min(
            self.send_buffer - self._out_bytes - self._reserved,
            self.budget.send_buffer - self.budget.buffered,
        )
        n = max(1, min(rows, free // frame_size))
        self._reserved += n * frame_size
        self.budget.buffered += n * frame_size
        return n

    async def reserve(self, rows: int, frame_size: int) -> int:
        """Wait for room in the send buffer for at least one frame of ``frame_size``; promise
        room for up to ``rows`` such frames and return how many. Give it back with
        :meth:`release` once the frames are queued (``push`` then counts them)."""
        if not self._room_waiters and self._may_take(frame_size):
            return self._take(rows, frame_size)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._room_waiters.append((future, rows, frame_size))
        self.budget.waiting[self] = None
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result(), frame_size)  # granted, but nobody will use it
            else:
                self._forget(future)
            raise

    def _forget(self, future: asyncio.Future[int]) -> None:
        for i, (waiter, _, _) in enumerate(self._room_waiters):
            if waiter is future:
                del self._room_waiters[i]
                break
        self._sync_waiting()

    def release(self, rows: int, frame_size: int) -> None:
        self._reserved -= rows * frame_size
        self.budget.buffered -= rows * frame_size
        self._room_freed()

    def _room_freed(self) -> None:
        """This connection's room came back: its own waiters first, then the address's."""
        if self._room_waiters or self._read_waiter is not None:
            self.grant()
        self.budget.freed()

    def grant(self) -> bool:
        """Wake the waiters that can proceed now, pumps in order (handing each its room).
        False if one was refused for the address's budget, not for this connection's."""
        blocked_by_address = False
        while self._room_waiters:
            future, rows, frame_size = self._room_waiters[0]
            if future.done():
                self._room_waiters.popleft()
                continue
            if not self._may_take(frame_size):
                blocked_by_address = self._out_bytes + self._reserved + frame_size <= self.send_buffer
                break
            self._room_waiters.popleft()
            future.set_result(self._take(rows, frame_size))
            self.budget.wakeups += 1
        reader = self._read_waiter
        if reader is not None:
            if reader.done():
                self._read_waiter = None
            elif self._may_read():
                self._read_waiter = None
                reader.set_result(None)
                self.budget.wakeups += 1
            elif self._held < self._max_held:
                blocked_by_address = True
        self._sync_waiting()
        return not blocked_by_address

    def _sync_waiting(self) -> None:
        if self._room_waiters or self._read_waiter is not None:
            self.budget.waiting[self] = None
        else:
            self.budget.waiting.pop(self, None)

    async def flush_forever(self) -> None:
        """Write the outbox in order until the connection closes; ``SlowReader`` if one
        write waits ``send_timeout`` for the client to take data."""
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._out:
                    data, answers_request = self._out.popleft()
                    try:
                        async with asyncio.timeout(self.send_timeout):
                            await self.ws.send(data)
                    except TimeoutError:
                        raise SlowReader() from None
                    self._out_bytes -= len(data)
                    self.budget.buffered -= len(data)
                    self._room_freed()
                    if answers_request:
                        self.slots.release()
        except ConnectionClosed:
            return

    # ---- SEND payloads waiting for their commit -----------------------------------------

    def hold(self, size: int) -> None:
        self._held += size
        self.budget.held += size

    def unhold(self, size: int) -> None:
        self._held -= size
        self.budget.held -= size
        self._room_freed()

    def _may_read(self) -> bool:
        return not (
            self._held >= self._max_held
            or (self._held > 0 and self.budget.held >= self.budget.in_flight_bytes)
        )

    async def wait_to_read(self) -> None:
        """Before reading the next request: wait while uncommitted payloads fill the budget
        of this connection, or of its address (unless this connection holds nothing)."""
        while not self._may_read():
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._read_waiter = future
            self.budget.waiting[self] = None
            try:
                await future
            finally:
                if self._read_waiter is future:
                    self._read_waiter = None
                self._sync_waiting()
