"""A passive wiretap for tests: a TCP proxy on 127.0.0.1 that records every byte it carries.

``WireTap(upstream_port)`` listens on a free port and relays each connection to
``127.0.0.1:upstream_port`` unchanged, keeping both directions of every connection. It is
the network observer of THREAT_MODEL §1 (and sees exactly what the relay receives and
sends): ``payloads()`` parses the recorded WebSocket frames and unmasks the client's, so a
test can search what an observer of a ``ws://`` connection reads. It runs its own event loop
in a background thread; ``stop()`` closes every socket and joins it. Its memory is bounded
by what the test sends through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading

HOST = "127.0.0.1"


class WireTap:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        #: (client to relay, relay to client) bytes of every connection, in accept order
        self.streams: list[tuple[bytearray, bytearray]] = []
        self.port = 0
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

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up, down = bytearray(), bytearray()
        self.streams.append((up, down))
        try:
            relay_r, relay_w = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, relay_w}
        await asyncio.gather(self._pipe(client_r, relay_w, up), self._pipe(relay_r, client_w, down))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: bytearray) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await reader.read(65536):
                log += chunk
                writer.write(chunk)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


def ws_payloads(stream: bytes) -> list[bytes]:
    """The payloads of the RFC 6455 frames after the HTTP head of ``stream`` (a truncated
    last frame is ignored)."""
    head_end = stream.find(b"\r\n\r\n")
    if head_end < 0:
        return []
    pos, out = head_end + 4, []
    while pos + 2 <= len(stream):
        length = stream[pos + 1] & 0x7F
        masked = bool(stream[pos + 1] & 0x80)
        pos += 2
        if length == 126:
            (length,) = struct.unpack("!H", stream[pos : pos + 2])
            pos += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", stream[pos : pos + 8])
            pos += 8
        mask = stream[pos : pos + 4] if masked else b""
        pos += 4 if masked else 0
        body = stream[pos : pos + length]
        if len(body) < length:
            break
        pos += length
        if masked:
            key = (mask * (length // 4 + 1))[:length]
            body = (int.from_bytes(body, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
        out.append(body)
    return out
