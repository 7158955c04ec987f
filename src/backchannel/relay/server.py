"""The relay: an untrusted WebSocket store-and-forward server for opaque frames.

Theory of operation
-------------------
:class:`RelayServer` wires one relay process together and runs its connections:

- the store behind one worker thread and the group committer (``database.py``), which turns
  all pending SEND/ACK/CREATE work into one transaction and answers STORED only after that
  commit;
- the requests (``requests.py``): decoding, capabilities proven by signatures over the
  connection's nonce, one reply per request;
- the subscriptions and their pumps (``delivery.py``), which push stored frames as DELIVER
  within a window and push again what waits too long for its ACK;
- the clients (``clients.py``): sockets and source addresses counted against the limits,
  and each address's request rate;
- the HTTP side door (``side_door.py``): ``/health``, and ``/metrics`` in prometheus_client's
  format (``metrics.py``);
- on PostgreSQL, the other relay processes serving the same database (``peers.py``): their
  notifications, and catch-up reads for what no notification announced.

Dead connections are found by WebSocket keepalive (``ping_interval_seconds`` and
``ping_timeout_seconds``); their subscriptions end with them.

One client cannot exhaust the relay (docs/OPERATIONS.md §1.5): connections are limited per
address and relay-wide; CREATE needs the access token when one is configured and is limited
per connection and per address; subscriptions likewise; every address has a request rate (a
token bucket); a connection's uncommitted SEND payloads and its queued DELIVERs are bounded in
bytes (``connection.py``), and a connection that takes nothing for ``send_timeout_seconds`` is
dropped. Mailboxes nobody subscribes to expire, so the relay-wide quota comes back. Every
refusal is an ``ERROR`` with its own code and a counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from backchannel import aio
from backchannel.aio import TaskSet
from backchannel.clock import Clock, Rng, SystemClock, SystemRng
from backchannel.errors import TransportError
from backchannel.proto import frames
from backchannel.proto.frames import RelayErrorCode
from backchannel.relay.certificate import RelayTLS, relay_tls
from backchannel.relay.clients import REFUSAL_SLACK_PER_ADDRESS, REFUSAL_SLACK_TOTAL, Client, Clients
from backchannel.relay.config import RelayConfig, metrics_address
from backchannel.relay.connection import RelayConnection, SlowReader
from backchannel.relay.database import Database
from backchannel.relay.delivery import Deliveries
from backchannel.relay.mailbox import expiry_cutoff
from backchannel.relay.metrics import COUNTER_NAMES, RelayMetrics
from backchannel.relay.peers import PeerWatch
from backchannel.relay.records import MailboxRecords
from backchannel.relay.requests import Requests, peek_request_id
from backchannel.relay.side_door import SideDoor, never_upgraded
from backchannel.relay.sockets import counted_connection
from backchannel.relay.storage.base import ExpireMailboxes, ExpireMessages, MailboxStore
from backchannel.relay.storage.postgres import PostgresMailboxStore
from backchannel.relay.storage_health import StorageHealth

__all__ = ["REFUSAL_SLACK_PER_ADDRESS", "REFUSAL_SLACK_TOTAL", "RelayServer", "main_serve", "run_relay"]

_LOG = logging.getLogger("backchannel.relay")

#: Frames up to this much larger than the limit are still read, so that the client gets a
#: TOO_LARGE error and keeps its connection; beyond it the WebSocket layer closes (1009).
OVERSIZE_SLACK = 64 * 1024
#: Bytes the WebSocket library may leave unsent before ``send`` waits (its default).
WS_WRITE_LIMIT = 2**15
#: How long a refused connection may take to receive its ERROR before it is dropped anyway.
REFUSAL_TIMEOUT = 5.0


class RelayServer:
    """One relay process's state; ``start`` listens, ``stop`` shuts down cleanly."""

    def __init__(
        self,
        config: RelayConfig,
        *,
        store: MailboxStore | None = None,
        clock: Clock | None = None,
        rng: Rng | None = None,
    ) -> None:
        self.config = config
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.url = ""
        self._clock = clock or SystemClock()
        self._rng = rng or SystemRng()
        self._store_given = store
        #: The relay's own tasks (committer, expiry sweep, one pump per subscription).
        self._tasks = TaskSet("relay")
        self._health = StorageHealth(self._clock, self.counters, self._catch_up_all)
        self.metrics = RelayMetrics(self.counters, self._gauges, self._depth_summary, self._tasks)
        observe_commit = self.metrics.commit_seconds.observe
        self._db = Database(config, self._clock, self.counters, self._health, observe_commit)
        self._clients = Clients(config, self._clock, self.counters)
        self._deliveries = Deliveries(config, self._db, self._clock, self.counters, self._tasks)
        self._records = MailboxRecords(self._db)
        self._requests = Requests(
            config,
            db=self._db,
            clients=self._clients,
            deliveries=self._deliveries,
            records=self._records,
            clock=self._clock,
            rng=self._rng,
            counters=self.counters,
            observe=self._observe_request,
        )
        self._side_door = SideDoor(config, self.metrics.exposition)
        #: WebSocket connections whose handler runs (the ``open_connections`` gauge).
        self._open_connections = 0
        self._ws_server: Server | None = None
        self._metrics_server: Server | None = None
        #: Where /metrics is served when ``metrics_listen`` is set ("" otherwise).
        self.metrics_url = ""
        #: The other relay processes on the same PostgreSQL database (None on SQLite).
        self.peers: PeerWatch | None = None
        #: The certificate served and its pin (None: plain WebSocket; relay/certificate.py).
        self.tls: RelayTLS | None = None

    def _catch_up_all(self) -> None:
        self._deliveries.catch_up_all()

    def _observe_request(self, kind: str, seconds: float) -> None:
        self.metrics.request_seconds.labels(kind).observe(seconds)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> str:
        """Open the store, start listening; return the URL actually listened on.

        A start that fails part-way (the database cannot open, a port is taken) stops what it
        had started before raising: no listener, task or database thread outlives it.
        """
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> str:
        await self._db.open(self._store_given, origin=self._rng.bytes(8).hex())
        self._tasks.spawn(self._db.committer.run(), "relay-committer")
        store = self._db.store
        if isinstance(store, PostgresMailboxStore):
            # Other relay processes may serve the same mailboxes (peers.py).
            self.peers = PeerWatch(self.config, self._db, store, self._deliveries, self.counters)
            if self.config.listen_notifications:
                self._tasks.spawn(self.peers.listen(), "relay-listen")
            self._tasks.spawn(self.peers.catch_up_forever(), "relay-catch-up")
        self._tasks.spawn(self._expire_forever(), "relay-expiry")
        self._tasks.spawn(self._db.watch_stalls(), "relay-stall-watch")
        self.tls = relay_tls(self.config)
        host, port = self.config.host, self.config.port
        frame_max = self._deliveries.frame_max
        try:
            self._ws_server = await serve(
                self._handle,
                host,
                port,
                compression=None,
                max_size=frame_max + OVERSIZE_SLACK,
                process_request=self._side_door.relay_request,
                write_limit=WS_WRITE_LIMIT,
                # Unsent bytes beyond what the flusher ever leaves (its send buffer, one frame
                # being written, the library's write limit) are PONGs nobody reads.
                create_connection=counted_connection(
                    self._clients, self.config.max_send_buffer_bytes + frame_max + WS_WRITE_LIMIT
                ),
                open_timeout=self.config.handshake_timeout_seconds,
                ping_interval=self.config.ping_interval_seconds,
                ping_timeout=self.config.ping_timeout_seconds,
                **self._tls_options(),
            )
            if self.config.metrics_listen:
                host, port = metrics_address(self.config.metrics_listen)
                self._metrics_server = await serve(
                    never_upgraded, host, port, process_request=self._side_door.metrics_request
                )
        except OSError as exc:
            raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.url = _url("ws", self.config.host, self._ws_server)
        if self.tls is not None:
            self.url = self.tls.named(self.url)
        if self._metrics_server is not None:
            self.metrics_url = _url("http", host, self._metrics_server)
        return self.url

    def _tls_options(self) -> dict[str, Any]:
        """``serve``'s TLS arguments: the context, and a TLS handshake bounded like the
        WebSocket one (a socket counts against the limits only once its TLS is up)."""
        if self.tls is None:
            return {}
        return {"ssl": self.tls.context, "ssl_handshake_timeout": self.config.handshake_timeout_seconds}

    async def stop(self) -> None:
        """Stop accepting, close connections, commit what was accepted, close the store."""
        for server in (self._ws_server, self._metrics_server):
            if server is not None:
                server.close()
                await server.wait_closed()
        self._ws_server = self._metrics_server = None
        self._deliveries.end_all()
        await self._db.flush()
        await self._tasks.close()
        await self._db.close()

    def _gauges(self) -> dict[str, float]:
        """What the metrics report as gauges, read at scrape time."""
        buffered, held = self._clients.buffered_bytes()
        return {
            "open_connections": self._open_connections,
            "sockets": self._clients.sockets + self._clients.refusing,
            "subscriptions": len(self._deliveries),
            "client_addresses": len(self._clients),
            "send_buffered_bytes": buffered,
            "in_flight_bytes": held,
        }

    async def _depth_summary(self) -> tuple[int, int, int]:
        return await self._db.depth_summary()

    # ---- one connection ----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        entry = self._clients.counted(ws)
        if entry is None:
            return  # (the socket closed during the handshake)
        address, within = entry
        client = self._clients[address]
        client.handlers += 1
        try:
            await self._serve(ws, address, client, within)
        finally:
            client.handlers -= 1
            self._clients.forget_if_idle(address)

    async def _serve(self, ws: ServerConnection, address: str, client: Client, within: bool) -> None:
        if not within:
            refusal = self._clients.refusal(client)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(REFUSAL_TIMEOUT):
                    await ws.send(
                        frames.encode(frames.Error(0, RelayErrorCode.TOO_MANY_CONNECTIONS, refusal))
                    )
                    await ws.close(CloseCode.TRY_AGAIN_LATER, "too many connections")
            return
        conn = RelayConnection(
            ws,
            self._rng.bytes(frames.NONCE_LEN),
            address=address,
            may_create=self._clients.token_presented(ws.request),
            send_buffer=self.config.max_send_buffer_bytes,
            in_flight_bytes=self.config.max_in_flight_bytes,
            send_timeout=self.config.send_timeout_seconds,
            budget=client.budget,
        )
        self.counters["connections"] += 1
        self._open_connections += 1
        conn.push(frames.Welcome(conn.nonce))
        tasks = TaskSet("relay connection")  # (this handler awaits both and reads their outcome)
        reader = tasks.spawn(self._read_loop(conn), report=False)
        flusher = tasks.spawn(conn.flush_forever(), report=False)
        try:
            done, _ = await asyncio.wait({reader, flusher}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled():
                    continue
                exc = task.exception()
                if isinstance(exc, SlowReader):
                    # Nothing more can reach this client (it reads nothing): no close handshake.
                    self.counters["slow_reader"] += 1
                    if ws.transport is not None:
                        ws.transport.abort()
                elif exc is not None:
                    _LOG.error("relay: connection task failed", exc_info=exc)
        finally:
            await tasks.close()
            conn.leave()
            self._open_connections -= 1
            client.subscriptions -= len(conn.receivers)
            self._deliveries.end_connection(conn)

    async def _read_loop(self, conn: RelayConnection) -> None:
        try:
            async for message in conn.ws:
                await conn.slots.acquire()
                await conn.wait_to_read()
                await self._clients.pace(conn.address, message)
                try:
                    await self._requests.on_message(conn, message)
                except Exception:
                    _LOG.exception("relay: unexpected failure handling a frame")
                    self.counters["internal"] += 1
                    rid = peek_request_id(message)
                    conn.reply(frames.Error(rid, RelayErrorCode.INTERNAL, "internal relay error"))
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                self.counters["too_large"] += 1

    # ---- expiry ------------------------------------------------------------------------

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.expiry_sweep_seconds)
            cutoff = expiry_cutoff(self._clock.now(), self.config.expiry_seconds)
            result = await self._db.commit_and_wait(ExpireMessages(cutoff))
            if result is not None:
                self.counters["expired"] += result.count
            self._deliveries.expired(cutoff)
            await self._expire_mailboxes()
            self._clients.forget_idle()

    async def _expire_mailboxes(self) -> None:
        """Delete mailboxes unused past ``mailbox_expiry_seconds``; subscribed ones are in use
        (marked so in the store every quarter of that period, not on every sweep)."""
        expiry = self.config.mailbox_expiry_seconds
        in_use = self._deliveries.in_use(expiry / 4)
        cutoff = expiry_cutoff(self._clock.now(), expiry)
        result = await self._db.commit_and_wait(ExpireMailboxes(cutoff, tuple(in_use)))
        if result is not None and result.count:
            self.counters["mailboxes_expired"] += result.count
            self._records.forget_all()  # (records of deleted mailboxes must not be found again)


def _url(scheme: str, host: str, server: Server) -> str:
    port = server.sockets[0].getsockname()[1] if server.sockets else 0
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


# ---- entry points ----------------------------------------------------------------------


async def run_relay(
    config: RelayConfig,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or forever); ``on_ready`` gets the URL once listening."""
    server = RelayServer(config)
    try:
        url = await server.start()
        if server.metrics_url:
            _LOG.info("relay metrics on %s/metrics", server.metrics_url)
        if server.tls is not None:
            _LOG.info(
                "relay TLS certificate %s, key pin %s: stations name this relay %s",
                server.tls.cert_path,
                server.tls.pin_text,
                url,
            )
        if on_ready is not None:
            on_ready(url)
        if stop is None:
            await asyncio.Event().wait()
        else:
            await stop.wait()
    finally:
        await server.stop()


def main_serve(config: RelayConfig) -> None:
    """Run a relay in this process until SIGTERM or SIGINT; announce the URL on stdout.

    The one stdout line ``relay listening on ws://HOST:PORT`` (``wss://HOST:PORT#pin=…`` with
    TLS) is a contract: tests and the CLI parse it. Logs go to stderr.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logging.getLogger("websockets").setLevel(logging.WARNING)

    def announce(url: str) -> None:
        print(f"relay listening on {url}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_relay(config, on_ready=announce, stop=stop)

    aio.run(main())
