"""A fault-injecting TCP proxy that understands the PostgreSQL wire protocol, for tests.

``PgFaultProxy(upstream_port, seed)`` listens on 127.0.0.1 (a free port) and relays each
connection to the PostgreSQL server at ``127.0.0.1:upstream_port``, reading whole protocol
messages in both directions, so that it can cut a connection at the moments that matter to a
store that commits in batches:

==================  ======================================================================
fault               value: the probability, per occasion, that the connection is reset
==================  ======================================================================
``after_commit``    the server answered ``CommandComplete "COMMIT"``: the transaction is
                    durable, but its client never learns it (the *indeterminate commit*)
``before_commit``   the client sent ``COMMIT`` (a simple ``Q``, or the ``B`` of a parsed one):
                    it never reaches the server, which rolls the transaction back
``mid_statement``   the client runs an INSERT, UPDATE or DELETE (its ``Q`` or ``B``): half
                    of the message is forwarded, then the connection is reset mid-statement
==================  ======================================================================

A reset aborts both sockets (RST, no goodbye). New connections are always accepted, so the
client's reconnection works at once. The proxy answers an ``SSLRequest`` with ``N`` itself
(it must read the plaintext protocol). Decisions come from one ``random.Random(seed)``; what
the proxy did is in ``counters``. It runs its own event loop in a background thread (as
``support.faultproxy`` does), so synchronous tests can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import threading
from collections.abc import Mapping

HOST = "127.0.0.1"
FAULT_NAMES = ("after_commit", "before_commit", "mid_statement")
COUNTER_NAMES = ("connections", "commits", "statements", *FAULT_NAMES)
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_WRITES = (b"INSERT", b"UPDATE", b"DELETE")
#: The largest message passed through; beyond it the connection is aborted.
MAX_MESSAGE = 64 * 1024 * 1024


def _query_of(kind: bytes, body: bytes, prepared: dict[bytes, bytes]) -> bytes:
    """The SQL text a message runs, upper-cased and stripped: a simple query ('Q'), or the
    statement a Bind ('B') runs (psycopg prepares a statement it runs often, and then sends
    only Bind/Execute); a Parse ('P') is remembered in ``prepared`` and runs nothing yet."""
    if kind == b"Q":
        return body.split(b"\0", 1)[0].strip().upper()
    if kind == b"P":
        name, query = body.split(b"\0", 2)[:2]
        prepared[name] = query.strip().upper()
    elif kind == b"B":
        return prepared.get(body.split(b"\0", 2)[1], b"")
    return b""


class PgFaultProxy:
    """A PostgreSQL-aware proxy on 127.0.0.1 that resets connections around commits."""

    def __init__(self, upstream_port: int, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.seed = seed
        self.faults: dict[str, float] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.port = 0
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, database: str) -> str:
        """A connection string to ``database`` through this proxy."""
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"pgproxy-{self.seed}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._loop is None:
            raise RuntimeError("PostgreSQL fault proxy did not start within 10 s")

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)

    def set_faults(self, faults: Mapping[str, float]) -> None:
        """Replace the active faults (``{}``: none); unknown names are a ``ValueError``."""
        unknown = set(faults) - set(FAULT_NAMES)
        if unknown:
            raise ValueError(f"unknown PostgreSQL faults: {sorted(unknown)}")
        self.faults = dict(faults)  # (one dict assignment: atomic for the proxy's thread)

    def cut_all(self) -> None:
        """Reset every open connection now."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._abort_all)

    # ---- the event loop thread ---------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._accept, HOST, 0))
            self.port = self._server.sockets[0].getsockname()[1]
            self._loop = loop
            self._ready.set()
            loop.run_forever()
        finally:
            self._ready.set()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _hit(self, fault: str) -> bool:
        chance = self.faults.get(fault, 0.0)
        if chance > 0 and self._rng.random() < chance:
            self.counters[fault] += 1
            return True
        return False

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.counters["connections"] += 1
        try:
            up_r, up_w = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, up_w}
        tasks = [
            asyncio.create_task(self._to_server(client_r, client_w, up_w)),
            asyncio.create_task(self._to_client(up_r, client_w)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_w, up_w):
                writer.transport.abort()
                self._writers.discard(writer)

    async def _to_server(
        self, reader: asyncio.StreamReader, client_w: asyncio.StreamWriter, up_w: asyncio.StreamWriter
    ) -> None:
        prepared: dict[bytes, bytes] = {}
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ValueError):
            while True:  # the untyped start: SSL/GSS requests (refused here), then the startup message
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                if not 8 <= length <= MAX_MESSAGE:
                    return
                body = await reader.readexactly(length - 4)
                if length == 8 and struct.unpack("!I", body)[0] in (_SSL_REQUEST, _GSSENC_REQUEST):
                    client_w.write(b"N")
                    continue
                up_w.write(struct.pack("!I", length) + body)
                break
            while True:
                head = await reader.readexactly(5)
                kind, length = head[:1], struct.unpack("!I", head[1:])[0]
                if not 4 <= length <= MAX_MESSAGE:
                    return
                message = head + await reader.readexactly(length - 4)
                query = _query_of(kind, message[5:], prepared)
                if query.startswith(b"COMMIT"):
                    if self._hit("before_commit"):
                        return
                elif query.startswith(_WRITES):
                    self.counters["statements"] += 1
                    if self._hit("mid_statement"):
                        up_w.write(message[: len(message) // 2])
                        await up_w.drain()
                        return
                up_w.write(message)
                await up_w.drain()

    async def _to_client(self, reader: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(5)
                kind, length = head[:1], struct.unpack("!I", head[1:])[0]
                if not 4 <= length <= MAX_MESSAGE:
                    return
                message = head + await reader.readexactly(length - 4)
                if kind == b"C" and message[5:].startswith(b"COMMIT\0"):
                    self.counters["commits"] += 1
                    if self._hit("after_commit"):
                        return
                client_w.write(message)
                await client_w.drain()
