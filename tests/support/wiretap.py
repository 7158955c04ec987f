"""A passive wiretap for tests: a TCP proxy on 127.0.0.1 that records every byte it carries.

``WireTap(upstream_port)`` listens on a free port and relays each connection to
``127.0.0.1:upstream_port`` unchanged, keeping both directions of every connection. It is
the network observer of THREAT_MODEL §1 (and sees exactly what the relay receives and
sends): ``payloads()`` parses the recorded WebSocket frames and unmasks the client's, so a
test can search what an observer of a ``ws://`` connection reads.

It also keeps a log of every WebSocket *message* as it passes (``messages``): when it passed
(``time.monotonic()``, the moment its last byte went through the tap), on which connection,
and in which direction (client → relay or relay → client), unmasked. That is what a traffic
analyst records: sizes, times and the relay frames inside, per connection.

It runs its own event loop in a background thread; ``stop()`` closes every socket and joins
it. Its memory is bounded: the raw streams and the message log together keep at most
``max_bytes`` (default 64 MiB); beyond that it still relays everything but records nothing
more, and ``overflowed`` says so (a test that needs the recording asserts it is false). With
``record=False`` it keeps nothing but ``counts`` (bytes each way and messages client → relay,
per connection), which it always keeps: a benchmark's meter.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from dataclasses import dataclass

HOST = "127.0.0.1"
OP_CONTINUATION, OP_BINARY = 0x0, 0x2


@dataclass(frozen=True)
class WsMessage:
    """One WebSocket message (data or control) as it passed the tap."""

    t: float  #: time.monotonic() when its last byte passed
    conn: int  #: index of its connection, in accept order
    upstream: bool  #: True: client → relay; False: relay → client
    opcode: int  #: 1 text, 2 binary, 8 close, 9 ping, 10 pong
    data: bytes  #: the unmasked payload (fragments joined)


class WireTap:
    def __init__(self, upstream_port: int, max_bytes: int = 64 * 1024 * 1024, record: bool = True) -> None:
        self.upstream_port = upstream_port
        self.max_bytes = max_bytes if record else 0
        #: per connection: [bytes client → relay, bytes relay → client, messages client → relay]
        self.counts: list[list[int]] = []
        #: (client to relay, relay to client) bytes of every connection, in accept order
        self.streams: list[tuple[bytearray, bytearray]] = []
        #: every WebSocket message seen, in the order the tap saw them complete
        self.messages: list[WsMessage] = []
        #: True once the budget was reached and something went unrecorded
        self.overflowed = False
        self.port = 0
        self._kept = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, HOST, 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def recorded_bytes(self) -> int:
        return sum(len(up) + len(down) for up, down in self.streams)

    def payloads(self) -> list[bytes]:
        """Every WebSocket message payload seen in either direction, unmasked."""
        out: list[bytes] = []
        for up, down in self.streams:
            out += ws_payloads(bytes(up)) + ws_payloads(bytes(down))
        return out

    def snapshot(self) -> list[WsMessage]:
        """A copy of the message log so far (safe while the tap runs)."""
        with self._lock:
            return list(self.messages)

    def _keep(self, n: int) -> bool:
        if self._kept + n > self.max_bytes:
            self.overflowed = self.max_bytes > 0
            return False
        self._kept += n
        return True

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up, down = bytearray(), bytearray()
        conn = len(self.streams)
        self.streams.append((up, down))
        self.counts.append([0, 0, 0])
        try:
            relay_r, relay_w = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, relay_w}
        await asyncio.gather(
            self._pipe(client_r, relay_w, up, _Parser(conn, True)),
            self._pipe(relay_r, client_w, down, _Parser(conn, False)),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: bytearray, parser: _Parser
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await reader.read(65536):
                now = time.monotonic()
                writer.write(chunk)
                count = self.counts[parser.conn]
                count[0 if parser.upstream else 1] += len(chunk)
                kept = self._keep(2 * len(chunk))  # the raw bytes, and the same bytes as messages
                if kept or not self.max_bytes:  # a meter parses to count messages, keeps nothing
                    done = parser.feed(chunk, now)
                    count[2] += len(done) if parser.upstream else 0
                if kept:
                    log += chunk
                    with self._lock:
                        self.messages += done
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


class _Parser:
    """Incremental RFC 6455 parser of one direction of one connection (after the HTTP head)."""

    def __init__(self, conn: int, upstream: bool) -> None:
        self.conn, self.upstream = conn, upstream
        self.buf = bytearray()
        self.in_head = True
        self.partial: list[bytes] = []
        self.partial_op = 0

    def feed(self, chunk: bytes, now: float) -> list[WsMessage]:
        self.buf += chunk
        if self.in_head:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return []
            del self.buf[: end + 4]
            self.in_head = False
        out: list[WsMessage] = []
        pos = 0
        while (frame := _frame(self.buf, pos)) is not None:
            fin, opcode, body, pos = frame
            if opcode >= 0x8:  # control frames are never fragmented and may come between fragments
                out.append(WsMessage(now, self.conn, self.upstream, opcode, body))
                continue
            if opcode != OP_CONTINUATION:
                self.partial, self.partial_op = [], opcode
            self.partial.append(body)
            if fin:
                out.append(WsMessage(now, self.conn, self.upstream, self.partial_op, b"".join(self.partial)))
                self.partial = []
        del self.buf[:pos]
        return out


def _frame(buf: bytes | bytearray, start: int) -> tuple[bool, int, bytes, int] | None:
    """(fin, opcode, unmasked body, end offset) of the whole frame at ``start`` in ``buf``, or None."""
    if len(buf) < start + 2:
        return None
    fin, opcode = bool(buf[start] & 0x80), buf[start] & 0x0F
    masked, length, pos = bool(buf[start + 1] & 0x80), buf[start + 1] & 0x7F, start + 2
    if length == 126:
        if len(buf) < pos + 2:
            return None
        (length,) = struct.unpack_from("!H", buf, pos)
        pos += 2
    elif length == 127:
        if len(buf) < pos + 8:
            return None
        (length,) = struct.unpack_from("!Q", buf, pos)
        pos += 8
    mask = bytes(buf[pos : pos + 4]) if masked else b""
    pos += 4 if masked else 0
    if len(buf) < pos + length:
        return None
    body = bytes(buf[pos : pos + length])
    if masked:
        key = (mask * (length // 4 + 1))[:length]
        body = (int.from_bytes(body, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return fin, opcode, body, pos + length


def ws_payloads(stream: bytes) -> list[bytes]:
    """The payloads of the RFC 6455 frames after the HTTP head of ``stream`` (a truncated
    last frame is ignored)."""
    head_end = stream.find(b"\r\n\r\n")
    if head_end < 0:
        return []
    pos, out = head_end + 4, []
    while (frame := _frame(stream, pos)) is not None:
        out.append(frame[2])
        pos = frame[3]
    return out
