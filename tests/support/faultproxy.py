"""A fault-injecting TCP proxy that understands WebSocket framing, for tests.

``FaultProxy(upstream_port, faults, seed)`` listens on 127.0.0.1 (a free port) and relays
each accepted connection to ``127.0.0.1:upstream_port``. The HTTP upgrade handshake passes
through untouched (so do plain HTTP requests such as ``GET /health``); after a ``101``
answer both directions are parsed as RFC 6455 frames (client frames are masked) and
forwarded as whole frames, never as arbitrary byte slices, while faults are injected:

============  =====================================================================
fault         value
============  =====================================================================
``drop``      probability that a data frame is dropped
``delay``     each frame is delayed by a uniform random 0 .. value ms (order is kept)
``duplicate`` probability that a data frame is sent twice
``reorder``   probability that a data frame is held back and released right after the
              next data frame (or after ``reorder_hold`` seconds if none comes)
``cut``       mean cuts per second: at random moments one connection is aborted on both
              sides (new connections are still accepted)
``blackhole`` any value > 0: swallow every frame, control frames too, without closing
              (a connection that died silently; only keepalive can notice)
``swallow``   probability that a station's SEND is answered STORED *by the proxy* and
              never reaches the relay: a hostile relay that lies about storing a frame
``none``      nothing (as does an empty dict)
============  =====================================================================

Only complete binary/text data frames are subject to drop, duplicate and reorder; control
frames (ping, pong, close) and fragments of fragmented messages always pass. Several faults
may be active at once. Every decision comes from ``random.Random`` seeded with ``seed``
(one generator per connection and direction, one for cuts), so a run can be repeated with
the same seed, up to the scheduling of the processes involved.

The proxy runs its own event loop in a background thread, so synchronous tests can use it:
``start()`` returns once it listens, ``stop()`` closes every socket and joins the thread.
It prints nothing: what it did is in ``counters``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import struct
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from backchannel.errors import BackchannelError
from backchannel.proto import frames
from backchannel.relay.mailbox import message_id

HOST = "127.0.0.1"
FAULT_NAMES = ("drop", "delay", "duplicate", "reorder", "cut", "blackhole", "swallow", "none")
COUNTER_NAMES = (
    "connections",  # client connections accepted
    "frames_forwarded",  # WebSocket frames written onwards (a duplicate's copy not included)
    "dropped",  # data frames dropped
    "duplicated",  # data frames sent twice
    "reordered",  # data frames released after a later frame
    "delayed",  # frames released later than they arrived
    "cuts",  # connections aborted by the "cut" fault or cut_all()
    "blackholed",  # frames swallowed by the "blackhole" fault
    "swallowed",  # SENDs answered STORED by the proxy and discarded (the "swallow" fault)
)
#: The largest frame the proxy accepts; beyond it the connection is aborted.
MAX_FRAME = 16 * 1024 * 1024
#: Frames queued per direction before the reading side waits for the writing side.
MAX_QUEUED = 1024
#: Longest HTTP head (request or response) passed through.
MAX_HEAD = 64 * 1024

_UPGRADE_REQUEST = re.compile(rb"\r\nupgrade:[ \t]*websocket[ \t]*\r\n", re.IGNORECASE)
_UPGRADE_RESPONSE = re.compile(rb"\AHTTP/1\.1 101 ")
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE = 0x0, 0x1, 0x2, 0x8


def check_faults(faults: Mapping[str, float]) -> dict[str, float]:
    """Validate a fault mapping; ``ValueError`` names the bad key."""
    clean: dict[str, float] = {}
    for name, value in faults.items():
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
        value = float(value)
        if not value >= 0:
            raise ValueError(f"fault {name!r} must be >= 0, not {value!r}")
        if name in ("drop", "duplicate", "reorder", "swallow") and value > 1:
            raise ValueError(f"fault {name!r} is a probability (0 .. 1), not {value!r}")
        if name != "none":
            clean[name] = value
    return clean


@dataclass(frozen=True)
class _Frame:
    data: bytes  # the whole frame as it came: header, masking key, payload
    opcode: int
    fin: bool

    @property
    def is_data(self) -> bool:
        """A complete text or binary message: the only frames that faults may touch."""
        return self.fin and self.opcode in (_OP_TEXT, _OP_BINARY)


async def _read_frame(reader: asyncio.StreamReader) -> _Frame:
    """One RFC 6455 frame, whole; ``IncompleteReadError`` at end of stream."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    parts = [head]
    if length == 126:
        ext = await reader.readexactly(2)
        (length,) = struct.unpack("!H", ext)
        parts.append(ext)
    elif length == 127:
        ext = await reader.readexactly(8)
        (length,) = struct.unpack("!Q", ext)
        parts.append(ext)
    if length > MAX_FRAME:
        raise ConnectionAbortedError(f"WebSocket frame of {length} bytes is over the proxy's limit")
    if head[1] & 0x80:  # masked (every client frame)
        parts.append(await reader.readexactly(4))
    parts.append(await reader.readexactly(length))
    return _Frame(b"".join(parts), head[0] & 0x0F, bool(head[0] & 0x80))


def _lie_stored(frame: _Frame) -> bytes | None:
    """For a station's SEND: the relay's STORED answer, as an unmasked WebSocket frame."""
    data = frame.data
    length = data[1] & 0x7F
    offset = 2 + {126: 2, 127: 8}.get(length, 0)
    if not data[1] & 0x80:
        return None
    mask, payload = data[offset : offset + 4], data[offset + 4 :]
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    try:
        request = frames.decode(body)
    except BackchannelError:
        return None
    if not isinstance(request, frames.Send):
        return None
    answer = frames.encode(frames.Stored(request.request_id, message_id(request.payload)))
    size = len(answer)
    if size < 126:
        head = bytes([0x80 | _OP_BINARY, size])
    else:
        head = bytes([0x80 | _OP_BINARY, 126]) + struct.pack("!H", size)
    return head + answer


@dataclass(eq=False)
class _Conn:
    """One proxied connection: the client's socket and ours to the upstream."""

    index: int
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    closed: bool = False

    def abort(self) -> None:
        """Close both sides at once, discarding whatever was not yet written."""
        self.closed = True
        for writer in (self.client, self.upstream):
            writer.transport.abort()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


class _Pipe:
    """One direction of one connection: a reader that decides, a writer that releases."""

    def __init__(
        self,
        proxy: FaultProxy,
        conn: _Conn,
        source: asyncio.StreamReader,
        dest: asyncio.StreamWriter,
        rng: random.Random,
    ) -> None:
        self.proxy = proxy
        self.conn = conn
        self.source = source
        self.dest = dest
        self.rng = rng
        # (release at, bytes); None: end of stream, close the destination.
        self.queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(MAX_QUEUED)
        self.last_release = 0.0
        self.held: _Frame | None = None
        self.held_copies = 1
        #: the other direction of the same connection (for the "swallow" fault's answers)
        self.back: _Pipe | None = None

    # ---- reading and deciding ----------------------------------------------------------

    async def read_head(self) -> bytes:
        """The HTTP head (request or response), passed on unchanged."""
        head = await self.source.readuntil(b"\r\n\r\n")
        await self.put(0.0, head)
        return head

    async def frames(self) -> None:
        """After the upgrade: frame by frame, with faults."""
        while True:
            frame = await _read_frame(self.source)
            await self.on_frame(frame)

    async def raw(self) -> None:
        """Not a WebSocket (plain HTTP): bytes pass as they come."""
        while chunk := await self.source.read(65536):
            await self.put(0.0, chunk)

    async def on_frame(self, frame: _Frame) -> None:
        faults = self.proxy.faults
        counters = self.proxy.counters
        if self.proxy.only is not None and self.conn.index not in self.proxy.only:
            faults = {}
        if faults.get("blackhole", 0) > 0:
            counters["blackholed"] += 1
            return
        if not frame.is_data:
            if frame.opcode == _OP_CLOSE:
                await self.release_held(reordered=False)  # the close stays last
            await self.emit(frame, 1)
            return
        if self.rng.random() < faults.get("drop", 0):
            counters["dropped"] += 1
            return
        if faults.get("swallow", 0) > 0 and self.back is not None:
            stored = _lie_stored(frame)
            if stored is not None and self.rng.random() < faults["swallow"]:
                counters["swallowed"] += 1
                await self.back.put(0.0, stored)
                return
        copies = 1
        if self.rng.random() < faults.get("duplicate", 0):
            counters["duplicated"] += 1
            copies = 2
        if self.held is None and self.rng.random() < faults.get("reorder", 0):
            self.held, self.held_copies = frame, copies
            self.start_task(self.release_later(frame))
            return
        await self.emit(frame, copies)
        await self.release_held(reordered=True)

    async def release_held(self, *, reordered: bool) -> None:
        frame, self.held = self.held, None
        if frame is not None:
            if reordered:
                self.proxy.counters["reordered"] += 1
            await self.emit(frame, self.held_copies)

    async def release_later(self, frame: _Frame) -> None:
        await asyncio.sleep(self.proxy.reorder_hold)
        if self.held is frame:  # no later frame came to overtake it
            await self.release_held(reordered=False)

    async def emit(self, frame: _Frame, copies: int) -> None:
        max_ms = self.proxy.faults.get("delay", 0)
        delay = self.rng.uniform(0, max_ms) / 1000 if max_ms > 0 else 0.0
        now = asyncio.get_running_loop().time()
        release = max(now + delay, self.last_release)  # never before an earlier frame
        if release > now:
            self.proxy.counters["delayed"] += 1
        self.proxy.counters["frames_forwarded"] += 1
        for _ in range(copies):
            await self.put(release, frame.data)

    async def put(self, release: float, data: bytes) -> None:
        self.last_release = max(self.last_release, release)
        await self.queue.put((release, data))

    async def finish(self) -> None:
        """End of the source: release what is held, then close the destination."""
        await self.release_held(reordered=False)
        await self.queue.put(None)

    # ---- writing -----------------------------------------------------------------------

    async def write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while (item := await self.queue.get()) is not None:
            release, data = item
            wait = release - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.dest.write(data)
            await self.dest.drain()
        self.dest.close()

    def start_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.conn.tasks.add(task)
        task.add_done_callback(self.conn.tasks.discard)


class FaultProxy:
    """A WebSocket-aware TCP proxy on 127.0.0.1 that injects faults (see the module doc)."""

    def __init__(
        self,
        upstream_port: int,
        faults: Mapping[str, float] | None = None,
        seed: int = 0,
        *,
        upstream_host: str = HOST,
        reorder_hold: float = 0.1,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.seed = seed
        self.reorder_hold = reorder_hold
        self.faults: dict[str, float] = check_faults(faults or {})
        #: connection indexes (0 = the first accepted) the faults apply to; None: all of them
        self.only: frozenset[int] | None = None
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.port = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._server: asyncio.Server | None = None
        self._conns: dict[int, _Conn] = {}
        self._next_index = 0
        self._faults_changed: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._cutter: asyncio.Task[None] | None = None

    # ---- the synchronous interface -----------------------------------------------------

    def start(self) -> None:
        """Listen (on a free port) in a background thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("the proxy was already started")
        self._thread = threading.Thread(target=self._thread_main, name=f"faultproxy-{self.seed}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start within 10 s")
        if self._start_error is not None:
            raise RuntimeError(f"fault proxy did not start: {self._start_error}") from self._start_error

    def stop(self) -> None:
        """Close the listener and every connection; join the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop may be closing already
                future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                with contextlib.suppress(Exception):
                    future.result(timeout=10)
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)

    def set_faults(self, faults: Mapping[str, float], only: set[int] | None = None) -> None:
        """Replace the active faults (e.g. ``{}`` to let things settle); takes effect at once.

        With ``only``, the faults apply to those connections alone (by index, 0 = the first
        accepted): for instance to one station's side of a relay.
        """
        clean = check_faults(faults)
        targets = None if only is None else frozenset(only)
        loop = self._loop
        if loop is None or loop.is_closed():
            self.faults, self.only = clean, targets
            return
        done = threading.Event()

        def apply() -> None:
            self.faults, self.only = clean, targets
            if self._faults_changed is not None:
                self._faults_changed.set()
            done.set()

        loop.call_soon_threadsafe(apply)
        done.wait(5)

    def cut_all(self) -> int:
        """Abort every open connection now (counted as cuts); returns how many."""
        loop = self._loop
        if loop is None:
            return 0
        future = asyncio.run_coroutine_threadsafe(self._cut_all(), loop)
        return future.result(timeout=5)

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- the event loop thread ---------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
            self._loop = loop
            self._ready.set()
            loop.run_forever()
        except BaseException as exc:  # reported by start()
            self._start_error = exc
        finally:
            self._ready.set()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _listen(self) -> None:
        self._faults_changed = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://{HOST}:{self.port}"
        self._cutter = asyncio.create_task(self._cut_forever())

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._cutter is not None:
            self._cutter.cancel()
        for conn in list(self._conns.values()):
            conn.abort()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        self._conns.clear()

    async def _cut_all(self) -> int:
        conns = list(self._conns.values())
        for conn in conns:
            self._cut(conn)
        return len(conns)

    def _cut(self, conn: _Conn) -> None:
        if not conn.closed:
            self.counters["cuts"] += 1
            conn.abort()
        self._conns.pop(conn.index, None)

    async def _cut_forever(self) -> None:
        """Cut a random open connection at exponentially distributed intervals."""
        assert self._faults_changed is not None
        rng = random.Random(f"{self.seed}:cut")
        while True:
            self._faults_changed.clear()
            rate = self.faults.get("cut", 0)
            if rate <= 0:
                await self._faults_changed.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rng.expovariate(rate)):
                    await self._faults_changed.wait()
                    continue  # the rate changed: draw again
            live = [c for _, c in sorted(self._conns.items()) if not c.closed]
            if live:
                self._cut(rng.choice(live))

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._proxy(client_r, client_w)
        finally:
            self._handlers.discard(task)

    async def _proxy(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.counters["connections"] += 1
        index = self._next_index
        self._next_index += 1
        try:
            up_r, up_w = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            client_w.transport.abort()
            return
        conn = _Conn(index, client_w, up_w)
        self._conns[index] = conn
        to_server = _Pipe(self, conn, client_r, up_w, random.Random(f"{self.seed}:{index}:c2s"))
        to_client = _Pipe(self, conn, up_r, client_w, random.Random(f"{self.seed}:{index}:s2c"))
        to_server.back = to_client
        for coro in (
            self._direction(to_server, request=True),
            self._direction(to_client, request=False),
            to_server.write_forever(),
            to_client.write_forever(),
        ):
            to_server.start_task(coro)
        try:
            while conn.tasks and not conn.closed:
                done, _ = await asyncio.wait(list(conn.tasks), timeout=1.0)
                if any(not t.cancelled() and t.exception() is not None for t in done):
                    break  # a socket error on one side: end both
        finally:
            conn.abort()
            await asyncio.gather(*conn.tasks, return_exceptions=True)
            self._conns.pop(index, None)

    async def _direction(self, pipe: _Pipe, *, request: bool) -> None:
        """Pass the HTTP head, then frames (after an upgrade) or raw bytes (otherwise)."""
        try:
            head = await pipe.read_head()
            if (_UPGRADE_REQUEST if request else _UPGRADE_RESPONSE).search(head):
                await pipe.frames()
            else:
                await pipe.raw()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # end of stream (or garbage): fall through to closing the other side
        await pipe.finish()
