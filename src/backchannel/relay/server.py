"""The relay: an untrusted WebSocket store-and-forward server for opaque frames.

Theory of operation
-------------------
Each connection gets a fresh 32-byte nonce in ``Welcome``; every capability it uses is
proven by an Ed25519 signature over that nonce (``frames.auth_message``), so nothing a
client sends can be replayed on another connection. The relay holds:

- the store (SQLite, one worker thread: every database call runs on ``_executor``);
- the :class:`GroupCommitter`, which turns all pending SEND/ACK/CREATE work into one
  transaction, and answers STORED only after that commit;
- one :class:`_Subscription` per mailbox that somebody listens to. A subscription belongs
  to one connection; a later SUBSCRIBE to the same mailbox takes it over (the usual case is
  a station reconnecting before the relay noticed its old connection died). Its pump task
  reads rows after its cursor from the store and pushes them as DELIVER, never more than
  ``push_window`` unacknowledged; it wakes on new commits, on ACKs, and when a pushed frame
  has waited ``redeliver_seconds`` for its ACK (then it pushes that frame again: a DELIVER
  may be lost by a middlebox on a connection that stays up).

Dead connections are found by WebSocket keepalive (``ping_interval_seconds`` and
``ping_timeout_seconds``); their subscriptions end with them.

One client cannot exhaust the relay (docs/OPERATIONS.md §1.5). A *client* is a connection,
or a source address (:class:`_Client` counts what all connections from one address hold):
connections are limited per address and relay-wide; CREATE needs the access token when one
is configured and is limited per connection and per address; subscriptions likewise; every
address has a request rate (a token bucket); a connection's uncommitted SEND payloads and
its queued DELIVERs are bounded in bytes (``connection.py``), and a connection that takes
nothing for ``send_timeout_seconds`` is dropped. Mailboxes nobody subscribes to expire, so
the relay-wide quota comes back. Every refusal is an ``ERROR`` with its own code and a
counter.

Nothing a client sends can crash the relay or another connection: every frame is decoded
in a ``try``, every failure becomes an ``ERROR`` reply and a counter, and the payloads are
never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hmac
import logging
import signal
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHeader
from websockets.frames import CloseCode
from websockets.headers import parse_authorization_basic
from websockets.http11 import Request, Response

from backchannel import aio
from backchannel.aio import TaskSet
from backchannel.clock import Clock, Rng, SystemClock, SystemRng
from backchannel.errors import (
    BackchannelError,
    FrameTooLarge,
    ProtocolError,
    StorageError,
    TransportError,
    UnsupportedVersion,
)
from backchannel.proto import frames
from backchannel.proto.frames import FrameType, RelayErrorCode
from backchannel.relay.committer import GroupCommitter
from backchannel.relay.config import RelayConfig, metrics_address
from backchannel.relay.connection import AddressBudget, RelayConnection, SlowReader
from backchannel.relay.mailbox import PushWindow, QueueLimits, expiry_cutoff
from backchannel.relay.sockets import counted_connection
from backchannel.relay.storage.base import (
    AddMailbox,
    DeleteMessage,
    ExpireMailboxes,
    ExpireMessages,
    MailboxRecord,
    MailboxStore,
    Outcome,
    PutMessage,
    TouchMailbox,
    WriteResult,
)
from backchannel.relay.storage.postgres import PostgresMailboxStore, is_postgres_url
from backchannel.relay.storage.sqlite import SqliteMailboxStore
from backchannel.relay.storage_health import KINDS as STORAGE_KINDS
from backchannel.relay.storage_health import StallWatch, StorageHealth

_LOG = logging.getLogger("backchannel.relay")
_T = TypeVar("_T")

#: Frames up to this much larger than the limit are still read, so that the client gets a
#: TOO_LARGE error and keeps its connection; beyond it the WebSocket layer closes (1009).
OVERSIZE_SLACK = 64 * 1024
#: Immutable mailbox records cached in memory (the cache is cleared when mailboxes expire).
MAILBOX_CACHE = 65_536
#: Sockets over the connection limits that still get a TOO_MANY_CONNECTIONS error (per
#: address, and relay-wide); beyond them a socket is closed as soon as it is accepted.
REFUSAL_SLACK_PER_ADDRESS = 4
REFUSAL_SLACK_TOTAL = 32
#: Bytes the WebSocket library may leave unsent before ``send`` waits (its default).
WS_WRITE_LIMIT = 2**15
#: How long a refused connection may take to receive its ERROR before it is dropped anyway.
REFUSAL_TIMEOUT = 5.0

COUNTER_NAMES = (
    "connections",  # connections accepted
    "frames_in",  # WebSocket messages received
    "malformed",  # undecodable frames, text messages, frames of a relay-only type
    "unsupported_version",
    "too_large",  # oversized frames (answered TOO_LARGE, or closed with 1009 if enormous)
    "auth_failed",  # SUBSCRIBE/AUTH_SEND with an unknown mailbox or a bad signature
    "not_authorised",  # SEND/ACK without the capability proven on this connection
    "mailbox_full",
    "quota",  # CREATE refused: the relay holds max_mailboxes
    "created",
    "stored",  # new frames stored
    "duplicates",  # SENDs of a frame already waiting (idempotent retry)
    "delivered",  # DELIVER frames pushed (first push on a subscription)
    "redelivered",  # DELIVER frames pushed again after redeliver_seconds without an ACK
    "acked",  # frames deleted on acknowledgement
    "expired",  # frames deleted by the expiry sweep
    "takeovers",  # SUBSCRIBEs that replaced another subscription to the same mailbox
    "commits",  # group-commit transactions
    "storage_errors",  # failed transactions or reads (and one counter per kind below)
    *(f"storage_errors_{kind}" for kind in STORAGE_KINDS),
    "storage_stalls",  # database calls that ran past storage_stall_seconds (a hung database)
    "storage_episodes",  # periods of failing storage (each logged once: storage_health.py)
    "storage_found_stored",  # SENDs of a failed batch found stored when read back (answered STORED)
    "catch_ups",  # subscriptions made to read their mailbox again from the oldest unacknowledged frame
    "internal",  # requests answered INTERNAL
    "token_refused",  # CREATEs without the relay's access token (TOKEN_REQUIRED)
    "create_limit",  # CREATEs over a connection's or an address's limit (CLIENT_LIMIT)
    "subscription_limit",  # SUBSCRIBEs over a connection's or an address's limit (CLIENT_LIMIT)
    "connection_limit",  # connections refused: relay-wide or per-address limit (TOO_MANY_CONNECTIONS)
    "rate_limited",  # requests held back because their address was over its rate (paced)
    "slow_reader",  # connections dropped for taking nothing for send_timeout_seconds
    "mailboxes_expired",  # mailboxes deleted unused after mailbox_expiry_seconds
)


class _Unreadable(enum.Enum):
    """A mailbox lookup that failed in the store (as opposed to "no such mailbox")."""

    UNREADABLE = "unreadable"


UNREADABLE = _Unreadable.UNREADABLE

#: Requests that make the relay verify an Ed25519 signature (about 0.1 ms of CPU each), and
#: what each costs in an address's request-rate bucket, against 1 for any other request.
SIGNED_REQUESTS = frozenset({frames.FrameType.CREATE, frames.FrameType.SUBSCRIBE, frames.FrameType.AUTH_SEND})
SIGNED_REQUEST_COST = 20


@dataclass(eq=False)
class _Client:
    """What all connections from one source address hold, for the per-address limits."""

    #: Sockets from this address within the connection limits (counted from TCP accept, so
    #: handshakes never finished count too), and sockets over them that are being refused.
    connections: int = 0
    refusing: int = 0
    #: Connections whose handler runs (the record must outlive them all).
    handlers: int = 0
    subscriptions: int = 0
    #: Monotonic times of the CREATEs accepted within ``create_window_seconds``.
    creates: deque[float] = field(default_factory=deque)
    #: Request-rate token bucket: tokens left, and when they were last topped up.
    tokens: float = 0.0
    topped_up: float = 0.0
    #: Bytes queued for and held from all this address's connections together.
    budget: AddressBudget = field(default_factory=AddressBudget)

    def token_wait(self, now: float, rate: float, burst: int, cost: int) -> float:
        """Take ``cost`` tokens and return 0, or return how long until there are enough."""
        self.tokens = min(float(burst), self.tokens + (now - self.topped_up) * rate)
        self.topped_up = now
        if self.tokens < cost:
            return (cost - self.tokens) / rate
        self.tokens -= cost
        return 0.0

    def recent_creates(self, now: float, window: float) -> int:
        while self.creates and self.creates[0] <= now - window:
            self.creates.popleft()
        return len(self.creates)

    def idle(self, now: float, config: RelayConfig) -> bool:
        """Nothing to remember: no connection, no recent CREATE, a full token bucket."""
        full = self.tokens + (now - self.topped_up) * config.requests_per_second >= config.request_burst
        recent = self.recent_creates(now, config.create_window_seconds)
        held = self.connections or self.refusing or self.handlers or self.subscriptions
        return not held and recent == 0 and full


@dataclass(eq=False)
class _Subscription:
    recv_id: bytes
    conn: RelayConnection
    window: PushWindow
    #: Monotonic time this mailbox was last marked in use in the store.
    touched_at: float = 0.0
    #: Set to make the pump look again: at the store if ``dirty``, else only at its timer.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Rows after the cursor may be waiting to be pushed: the pump must read the store.
    dirty: bool = False
    task: asyncio.Task[None] | None = None
    #: True while the pump has pushed every stored row and is not reading the store: a
    #: newly stored frame can then be pushed straight from memory, saving a store read.
    caught_up: bool = False
    #: The pump must read the mailbox again from its oldest frame (not from the cursor): after
    #: a storage error a frame may be stored that was never pushed, behind the cursor.
    rewind: bool = False

    def catch_up(self) -> None:
        """Read the whole mailbox again: push every stored frame not awaiting its ACK here."""
        self.rewind = True
        self.caught_up = False
        self.poke()

    def poke(self) -> None:
        """New work: there may be rows to read (a commit, a freed slot, a new subscription)."""
        self.dirty = True
        self.wake.set()

    def rearm(self) -> None:
        """The redelivery deadline may have moved earlier: the pump recomputes its timer."""
        self.wake.set()


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
        self._store: MailboxStore | None = None
        self._stalls = StallWatch(self._clock, self.counters, config.storage_stall_seconds)
        self._executor = _WatchedExecutor(self._stalls)
        self._limits = QueueLimits(config.max_mailbox_depth, config.max_mailboxes)
        self._committer: GroupCommitter | None = None
        self._subs: dict[bytes, _Subscription] = {}
        self._by_recv: dict[bytes, MailboxRecord] = {}
        self._by_send: dict[bytes, MailboxRecord] = {}
        #: WebSocket connections whose handler runs (the ``open_connections`` gauge).
        self._open_connections = 0
        #: TCP sockets within the relay-wide limit, and sockets over it being refused.
        self._sockets = 0
        self._refusing = 0
        #: Every socket counted: its client address, and whether it is within the limits.
        self._counted: dict[ServerConnection, tuple[str, bool]] = {}
        self._clients: dict[str, _Client] = {}
        #: The relay's own tasks (committer, expiry sweep, one pump per subscription).
        self._tasks = TaskSet("relay")
        self._ws_server: Server | None = None
        self._metrics_server: Server | None = None
        #: Where /metrics is served when ``metrics_listen`` is set ("" otherwise).
        self.metrics_url = ""
        #: The largest DELIVER frame: what a pump reserves in a send buffer per row.
        self._frame_max = frames.HEADER.size + 2 * frames.ID_LEN + config.max_payload
        self._health = StorageHealth(self._clock, self.counters, self._catch_up_all)

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
        store: MailboxStore
        if self._store_given is not None:
            store = self._store_given
        else:
            opener = PostgresMailboxStore if is_postgres_url(self.config.db_path) else SqliteMailboxStore
            store = await self._db(opener, self.config.db_path)
        self._store = store
        self._committer = GroupCommitter(
            store, self._executor, self._limits, self._clock, self.counters, self._health
        )
        self._tasks.spawn(self._committer.run(), "relay-committer")
        self._tasks.spawn(self._expire_forever(), "relay-expiry")
        self._tasks.spawn(self._watch_stalls(), "relay-stall-watch")
        host, port = self.config.host, self.config.port
        try:
            self._ws_server = await serve(
                self._handle,
                host,
                port,
                compression=None,
                max_size=self._frame_max + OVERSIZE_SLACK,
                process_request=self._process_request,
                write_limit=WS_WRITE_LIMIT,
                # Unsent bytes beyond what the flusher ever leaves (its send buffer, one frame
                # being written, the library's write limit) are PONGs nobody reads.
                create_connection=counted_connection(
                    self, self.config.max_send_buffer_bytes + self._frame_max + WS_WRITE_LIMIT
                ),
                open_timeout=self.config.handshake_timeout_seconds,
                ping_interval=self.config.ping_interval_seconds,
                ping_timeout=self.config.ping_timeout_seconds,
            )
            if self.config.metrics_listen:
                host, port = metrics_address(self.config.metrics_listen)
                self._metrics_server = await serve(
                    _never_upgraded, host, port, process_request=self._process_metrics_request
                )
        except OSError as exc:
            raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.url = _url("ws", self.config.host, self._ws_server)
        if self._metrics_server is not None:
            self.metrics_url = _url("http", host, self._metrics_server)
        return self.url

    async def stop(self) -> None:
        """Stop accepting, close connections, commit what was accepted, close the store."""
        for server in (self._ws_server, self._metrics_server):
            if server is not None:
                server.close()
                await server.wait_closed()
        self._ws_server = self._metrics_server = None
        for sub in list(self._subs.values()):
            self._end_subscription(sub)
        if self._committer is not None:
            await self._committer.flush()
        await self._tasks.close()
        if self._store is not None:
            await self._db(self._store.close)
            self._store = None
        self._executor.shutdown(wait=True)

    # ---- HTTP side door ----------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer ``GET /health`` and ``GET /metrics`` without a WebSocket handshake (``/metrics``
        only when it is not served on its own address)."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            if self.config.metrics_listen:
                return connection.respond(HTTPStatus.NOT_FOUND, "/metrics is served on another address\n")
            return self._metrics_response(connection, request)
        return None

    def _process_metrics_request(self, connection: ServerConnection, request: Request) -> Response:
        """The metrics address: ``/metrics`` and ``/health``, and no WebSocket at all."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return self._metrics_response(connection, request)
        return connection.respond(HTTPStatus.NOT_FOUND, "only /metrics and /health here\n")

    def _metrics_response(self, connection: ServerConnection, request: Request) -> Response:
        token = self.config.metrics_token
        if token:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "/metrics needs its bearer token\n")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return connection.respond(HTTPStatus.OK, self.metrics_text())

    def metrics_text(self) -> str:
        """The counters in the Prometheus text format."""
        lines = [f"backchannel_relay_{name}_total {value}" for name, value in self.counters.items()]
        lines.append(f"backchannel_relay_open_connections {self._open_connections}")
        lines.append(f"backchannel_relay_sockets {self._sockets + self._refusing}")
        lines.append(f"backchannel_relay_subscriptions {len(self._subs)}")
        lines.append(f"backchannel_relay_client_addresses {len(self._clients)}")
        budgets = [c.budget for c in self._clients.values()]
        lines.append(f"backchannel_relay_send_buffered_bytes {sum(b.buffered for b in budgets)}")
        lines.append(f"backchannel_relay_in_flight_bytes {sum(b.held for b in budgets)}")
        return "\n".join(lines) + "\n"

    # ---- one connection ----------------------------------------------------------------

    # ---- sockets (SocketWatch: called by sockets.counted_connection) ---------------------

    def accepted(self, conn: ServerConnection) -> bool:
        """Count a socket the moment it is accepted: within the limits, or among the few over
        them that are told why (TOO_MANY_CONNECTIONS); any other is refused at once."""
        address = _address_of(conn)
        client = self._clients.setdefault(address, self._new_client())
        config = self.config
        if client.connections < config.max_connections_per_address and self._sockets < config.max_connections:
            client.connections += 1
            self._sockets += 1
            self._counted[conn] = (address, True)
            return True
        self.counters["connection_limit"] += 1
        if client.refusing < REFUSAL_SLACK_PER_ADDRESS and self._refusing < REFUSAL_SLACK_TOTAL:
            client.refusing += 1
            self._refusing += 1
            self._counted[conn] = (address, False)
            return True
        self._forget_if_idle(address)
        return False

    def gone(self, conn: ServerConnection) -> None:
        entry = self._counted.pop(conn, None)
        if entry is None:
            return
        address, within = entry
        client = self._clients[address]
        if within:
            client.connections -= 1
            self._sockets -= 1
        else:
            client.refusing -= 1
            self._refusing -= 1
        self._forget_if_idle(address)

    def overfed(self, conn: ServerConnection) -> None:
        """A client left more than ``max_send_buffer_bytes`` unread (e.g. the PONGs to a PING
        flood): it is dropped as a slow reader."""
        self.counters["slow_reader"] += 1

    # ---- one connection ----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        entry = self._counted.get(ws)
        if entry is None:
            return  # (the socket closed during the handshake)
        address, within = entry
        client = self._clients[address]
        client.handlers += 1
        try:
            await self._serve(ws, address, client, within)
        finally:
            client.handlers -= 1
            self._forget_if_idle(address)

    async def _serve(self, ws: ServerConnection, address: str, client: _Client, within: bool) -> None:
        if not within:
            refusal = self._connection_refusal(client)
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
            may_create=self._token_presented(ws.request),
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
            for recv_id in conn.receivers:
                sub = self._subs.get(recv_id)
                if sub is not None and sub.conn is conn:
                    self._end_subscription(sub)

    def _new_client(self) -> _Client:
        return _Client(
            tokens=float(self.config.request_burst),
            topped_up=self._clock.monotonic(),
            budget=AddressBudget(
                self.config.max_send_buffer_bytes_per_address, self.config.max_in_flight_bytes_per_address
            ),
        )

    def _connection_refusal(self, client: _Client) -> str:
        """Why a socket over the limits is refused (it was counted over them when accepted)."""
        if client.connections >= self.config.max_connections_per_address:
            limit = self.config.max_connections_per_address
            return f"this relay allows {limit} connections from one address; close one first"
        return f"this relay holds its maximum of {self.config.max_connections} connections; retry later"

    def _forget_if_idle(self, address: str) -> None:
        client = self._clients.get(address)
        if client is not None and client.idle(self._clock.monotonic(), self.config):
            del self._clients[address]

    def _token_presented(self, request: Request | None) -> bool:
        """Did the handshake carry the access token (as the password of HTTP Basic credentials,
        which a client sends for ``ws://:TOKEN@host:port``)? Always True without a token."""
        token = self.config.access_token
        if not token:
            return True
        header = request.headers.get("Authorization") if request is not None else None
        if not header:
            return False
        try:
            _, given = parse_authorization_basic(header)
        except InvalidHeader:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())

    async def _read_loop(self, conn: RelayConnection) -> None:
        try:
            async for message in conn.ws:
                await conn.slots.acquire()
                await conn.wait_to_read()
                await self._pace(conn, message)
                try:
                    await self._on_message(conn, message)
                except Exception:
                    _LOG.exception("relay: unexpected failure handling a frame")
                    self.counters["internal"] += 1
                    conn.reply(
                        frames.Error(
                            _peek_request_id(message), RelayErrorCode.INTERNAL, "internal relay error"
                        )
                    )
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                self.counters["too_large"] += 1

    async def _pace(self, conn: RelayConnection, message: str | bytes) -> None:
        """Hold the next request until its address's token bucket has room: a client over
        ``requests_per_second`` is slowed (its connections stop being read, and TCP pushes back
        on it), never refused, so a busy line is only paced and loses nothing to redelivery.
        A request that makes the relay check a signature costs ``SIGNED_REQUEST_COST`` tokens,
        since that is where its CPU goes."""
        client = self._clients[conn.address]
        cost = SIGNED_REQUEST_COST if _peek_type(message) in SIGNED_REQUESTS else 1
        rate, burst = self.config.requests_per_second, self.config.request_burst
        slowed = False
        while (wait := client.token_wait(self._clock.monotonic(), rate, burst, cost)) > 0:
            if not slowed:
                self.counters["rate_limited"] += 1
                slowed = True
            await asyncio.sleep(wait)

    async def _on_message(self, conn: RelayConnection, message: str | bytes) -> None:
        """Handle one WebSocket message; queue exactly one reply (now or after a commit)."""
        self.counters["frames_in"] += 1
        if isinstance(message, str):
            self._refuse(
                conn,
                0,
                RelayErrorCode.MALFORMED,
                "malformed",
                "text messages are not relay frames; send binary messages",
            )
            return
        rid = _peek_request_id(message)
        try:
            frame = frames.decode(message, self.config.max_payload)
        except UnsupportedVersion as exc:
            self._refuse(
                conn,
                rid,
                RelayErrorCode.UNSUPPORTED_VERSION,
                "unsupported_version",
                f"{exc}; this relay speaks version {frames.VERSION}",
            )
            return
        except FrameTooLarge as exc:
            self._refuse(
                conn,
                rid,
                RelayErrorCode.TOO_LARGE,
                "too_large",
                f"{exc} (payload limit {self.config.max_payload} bytes)",
            )
            return
        except ProtocolError as exc:
            self._refuse(conn, rid, RelayErrorCode.MALFORMED, "malformed", str(exc))
            return
        match frame:
            case frames.Create():
                self._create(conn, frame)
            case frames.Subscribe():
                await self._subscribe(conn, frame)
            case frames.AuthSend():
                await self._auth_send(conn, frame)
            case frames.Send():
                self._send(conn, frame)
            case frames.Ack():
                self._ack(conn, frame)
            case frames.Ping():
                conn.reply(frames.Ok(frame.request_id))
            case _:
                self._refuse(
                    conn,
                    rid,
                    RelayErrorCode.MALFORMED,
                    "malformed",
                    f"frame type {type(frame).__name__} is sent by relays, not to them",
                )

    def _refuse(
        self, conn: RelayConnection, rid: int, code: RelayErrorCode, counter: str, message: str
    ) -> None:
        self.counters[counter] += 1
        conn.reply(frames.Error(rid, code, message))

    def _internal(self, conn: RelayConnection, rid: int) -> None:
        self._refuse(
            conn,
            rid,
            RelayErrorCode.INTERNAL,
            "internal",
            "the relay could not complete the request; retry later",
        )

    # ---- requests ----------------------------------------------------------------------

    def _create(self, conn: RelayConnection, frame: frames.Create) -> None:
        rid = frame.request_id
        if not conn.may_create:
            self._refuse(
                conn,
                rid,
                RelayErrorCode.TOKEN_REQUIRED,
                "token_refused",
                "this relay creates mailboxes only for clients with its access token "
                "(put it in the relay URL: ws://:TOKEN@host:port)",
            )
            return
        client = self._clients[conn.address]
        now = self._clock.monotonic()
        if conn.creates >= self.config.max_creates_per_connection:
            limit = f"{self.config.max_creates_per_connection} mailboxes per connection"
        elif (
            client.recent_creates(now, self.config.create_window_seconds)
            >= self.config.max_creates_per_address
        ):
            limit = (
                f"{self.config.max_creates_per_address} mailboxes per address"
                f" in {self.config.create_window_seconds:g} s"
            )
        else:
            limit = ""
        if limit:
            self._refuse(
                conn, rid, RelayErrorCode.CLIENT_LIMIT, "create_limit", f"CREATE refused: limit of {limit}"
            )
            return
        conn.creates += 1
        client.creates.append(now)
        record = MailboxRecord(
            recv_id=self._rng.bytes(frames.ID_LEN),
            send_id=self._rng.bytes(frames.ID_LEN),
            recv_key=frame.recv_key,
            send_key=frame.send_key,
            created_at=self._clock.now(),
        )

        def done(result: WriteResult | None) -> None:
            if result is None or result.outcome is not Outcome.CREATED:
                conn.creates -= 1  # not created: it does not count against the client
                with contextlib.suppress(ValueError):
                    client.creates.remove(now)
            if result is None or result.outcome is Outcome.ID_TAKEN:
                self._internal(conn, rid)
            elif result.outcome is Outcome.QUOTA:
                self._refuse(
                    conn,
                    rid,
                    RelayErrorCode.QUOTA,
                    "quota",
                    "this relay holds its maximum number of mailboxes",
                )
            else:
                self.counters["created"] += 1
                self._remember(record)
                conn.reply(frames.Created(rid, record.recv_id, record.send_id))

        self._commit(AddMailbox(record), done)

    async def _subscribe(self, conn: RelayConnection, frame: frames.Subscribe) -> None:
        client = self._clients[conn.address]
        if frame.recv_id not in conn.receivers:
            if len(conn.receivers) >= self.config.max_subscriptions_per_connection:
                limit = f"{self.config.max_subscriptions_per_connection} mailboxes per connection"
            elif client.subscriptions >= self.config.max_subscriptions_per_address:
                limit = f"{self.config.max_subscriptions_per_address} mailboxes per address"
            else:
                limit = ""
            if limit:
                self._refuse(
                    conn,
                    frame.request_id,
                    RelayErrorCode.CLIENT_LIMIT,
                    "subscription_limit",
                    f"SUBSCRIBE refused: limit of {limit} subscribed",
                )
                return
        record = await self._mailbox(frame.recv_id, by_send=False)
        if record is UNREADABLE:
            self._internal(conn, frame.request_id)  # not AUTH: the client should retry
            return
        signed = frames.auth_message(conn.nonce, FrameType.SUBSCRIBE, frame.recv_id)
        if record is None or not _verify(record.recv_key, frame.signature, signed):
            self._refuse(
                conn,
                frame.request_id,
                RelayErrorCode.AUTH,
                "auth_failed",
                "SUBSCRIBE refused: unknown mailbox or bad signature",
            )
            return
        if frame.recv_id not in conn.receivers:
            conn.receivers.add(frame.recv_id)
            client.subscriptions += 1
        conn.reply(frames.Ok(frame.request_id))  # queued before any DELIVER of this mailbox
        old = self._subs.get(frame.recv_id)
        if old is not None:
            self.counters["takeovers"] += 1
            self._end_subscription(old)
        window = PushWindow(self.config.push_window, self.config.redeliver_seconds)
        sub = _Subscription(frame.recv_id, conn, window, touched_at=self._clock.monotonic())
        self._subs[frame.recv_id] = sub
        self._commit(TouchMailbox(frame.recv_id), _ignore)  # in use: it must not expire
        sub.task = self._tasks.spawn(self._pump(sub), "relay-pump")
        sub.poke()

    async def _auth_send(self, conn: RelayConnection, frame: frames.AuthSend) -> None:
        record = await self._mailbox(frame.send_id, by_send=True)
        if record is UNREADABLE:
            self._internal(conn, frame.request_id)
            return
        signed = frames.auth_message(conn.nonce, FrameType.AUTH_SEND, frame.send_id)
        if record is None or not _verify(record.send_key, frame.signature, signed):
            self._refuse(
                conn,
                frame.request_id,
                RelayErrorCode.AUTH,
                "auth_failed",
                "AUTH_SEND refused: unknown mailbox or bad signature",
            )
            return
        conn.senders[frame.send_id] = record.recv_id
        conn.reply(frames.Ok(frame.request_id))

    def _send(self, conn: RelayConnection, frame: frames.Send) -> None:
        rid = frame.request_id
        recv_id = conn.senders.get(frame.send_id)
        if recv_id is None:
            self._refuse(
                conn,
                rid,
                RelayErrorCode.NOT_AUTHORISED,
                "not_authorised",
                "SEND needs a successful AUTH_SEND for this mailbox on this connection",
            )
            return

        size = len(frame.payload)
        conn.hold(size)

        def done(result: WriteResult | None) -> None:
            conn.unhold(size)
            if result is None:
                self._internal(conn, rid)
            elif result.outcome is Outcome.NO_MAILBOX:
                conn.senders.pop(frame.send_id, None)
                self._refuse(
                    conn,
                    rid,
                    RelayErrorCode.AUTH,
                    "auth_failed",
                    "SEND refused: the mailbox no longer exists (it expired unused)",
                )
            elif result.outcome is Outcome.MAILBOX_FULL:
                self._refuse(
                    conn,
                    rid,
                    RelayErrorCode.MAILBOX_FULL,
                    "mailbox_full",
                    f"mailbox is full ({self.config.max_mailbox_depth} frames waiting)",
                )
            else:
                if result.outcome is Outcome.STORED:
                    self.counters["stored"] += 1
                    sub = self._subs.get(recv_id)
                    deliver = frames.HEADER.size + 2 * frames.ID_LEN + size
                    if (
                        sub is not None
                        and sub.caught_up
                        and sub.window.fetch_limit() > 0
                        and sub.conn.has_room(deliver)
                    ):
                        sub.window.pushed(
                            result.count, result.msg_id, self._clock.now(), self._clock.monotonic()
                        )
                        sub.conn.push(frames.Deliver(recv_id, result.msg_id, frame.payload))
                        self.counters["delivered"] += 1
                        if sub.window.unacked == 1:
                            sub.rearm()  # the pump may be waiting without a redelivery timer
                    elif sub is not None:
                        sub.caught_up = False
                        sub.poke()
                else:
                    self.counters["duplicates"] += 1
                    self._push_if_stranded(recv_id, result)
                conn.reply(frames.Stored(rid, result.msg_id))

        self._commit(PutMessage(recv_id, frame.payload), done)

    def _ack(self, conn: RelayConnection, frame: frames.Ack) -> None:
        rid, recv_id, msg_id = frame.request_id, frame.recv_id, frame.msg_id
        if recv_id not in conn.receivers:
            self._refuse(
                conn,
                rid,
                RelayErrorCode.NOT_AUTHORISED,
                "not_authorised",
                "ACK needs a successful SUBSCRIBE to this mailbox on this connection",
            )
            return

        def done(result: WriteResult | None) -> None:
            if result is None:
                self._internal(conn, rid)
                return
            if result.outcome is Outcome.DELETED:
                self.counters["acked"] += 1
            sub = self._subs.get(recv_id)
            # A freed slot matters only if rows wait beyond the cursor; when the pump has
            # caught up, every stored frame was pushed and new ones come by the fast path.
            if sub is not None and sub.window.acked(msg_id) and not sub.caught_up:
                sub.poke()
            conn.reply(frames.Ok(rid))

        self._commit(DeleteMessage(recv_id, msg_id), done)

    # ---- pushing -----------------------------------------------------------------------

    def _push_if_stranded(self, recv_id: bytes, result: WriteResult) -> None:
        """A SEND of a frame already stored: if the live subscription does not await its ACK,
        it may never have been pushed (its commit's reply was lost): make sure it is."""
        sub = self._subs.get(recv_id)
        if sub is None or sub.window.awaits(result.msg_id, result.count):
            return
        if result.count <= 0 or result.count <= sub.window.cursor:
            self.counters["catch_ups"] += 1
            sub.catch_up()  # behind the cursor: only a read from the start finds it
        else:
            sub.caught_up = False
            sub.poke()

    def _catch_up_all(self) -> None:
        """After a storage error: what was stored and pushed is uncertain for every mailbox."""
        for sub in self._subs.values():
            self.counters["catch_ups"] += 1
            sub.catch_up()

    async def _pump(self, sub: _Subscription) -> None:
        """Push stored frames of one mailbox, oldest first, within the window; push again
        those left unacknowledged for ``redeliver_seconds``."""
        assert self._store is not None
        while True:
            await self._wait_for_work(sub)
            sub.wake.clear()
            try:
                await self._redeliver(sub)
                if self._subs.get(sub.recv_id) is not sub:
                    return
                if not sub.dirty:
                    continue  # only the timer (or a rearm): the store has nothing new
                sub.dirty = False
                sub.caught_up = False
                if sub.rewind:
                    sub.rewind = False
                    sub.window.rewind()
                while (limit := sub.window.fetch_limit()) > 0:
                    # Room in the connection's send buffer first: a client that does not read
                    # holds the pump here, not its frames in this process's memory.
                    room = await sub.conn.reserve(limit, self._frame_max)
                    try:
                        if self._subs.get(sub.recv_id) is not sub:
                            return
                        rows = await self._db(
                            self._store.messages_after, sub.recv_id, sub.window.cursor, room
                        )
                        if self._subs.get(sub.recv_id) is not sub:
                            return
                        self._health.succeeded()
                        now = self._clock.monotonic()
                        pushed = 0
                        for row in rows:
                            if sub.window.awaits(row.msg_id, row.seq):
                                sub.window.skip(row.seq)  # (a catch-up: already pushed, not acked)
                                continue
                            sub.window.pushed(row.seq, row.msg_id, row.stored_at, now)
                            sub.conn.push(frames.Deliver(row.recv_id, row.msg_id, row.payload))
                            pushed += 1
                    finally:
                        sub.conn.release(room, self._frame_max)
                    self.counters["delivered"] += pushed
                    if len(rows) < room:
                        sub.caught_up = not sub.dirty  # (dirty: a commit came during the read)
                        break
            except BackchannelError as exc:
                failure = exc if isinstance(exc, StorageError) else StorageError(str(exc))
                self._health.failed("a mailbox read", failure)  # (marks every subscription to catch up)
                await asyncio.sleep(1.0)
                sub.catch_up()

    async def _wait_for_work(self, sub: _Subscription) -> None:
        """Until woken, or until the oldest unacknowledged push is due again."""
        deadline = sub.window.next_redelivery()
        if deadline is None:
            await sub.wake.wait()
            return
        delay = deadline - self._clock.monotonic()
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await sub.wake.wait()

    async def _redeliver(self, sub: _Subscription) -> None:
        """Push again every frame whose last push has waited ``redeliver_seconds`` for an ACK."""
        assert self._store is not None
        now = self._clock.monotonic()
        due = sub.window.due(now)
        if not due:
            return
        if sub.conn.backlogged:
            # Earlier frames are still on their way out of this process: nothing was lost
            # yet, so start the clocks again rather than queue copies behind the originals.
            for seq, msg_id in due:
                sub.window.redelivered(msg_id, seq, now)
            return
        rows = await self._db(self._store.messages_by_seq, sub.recv_id, [seq for seq, _ in due])
        if self._subs.get(sub.recv_id) is not sub:
            return
        stored = {row.seq: row for row in rows}
        now = self._clock.monotonic()
        for seq, msg_id in due:
            row = stored.get(seq)
            if row is None:
                sub.window.forget(msg_id, seq)  # acknowledged or expired meanwhile
            elif sub.window.redelivered(msg_id, seq, now):
                # Out of room: the clock restarts and the frame is due again later.
                deliver = frames.Deliver(row.recv_id, row.msg_id, row.payload)
                if sub.conn.has_room(frames.HEADER.size + 2 * frames.ID_LEN + len(row.payload)):
                    sub.conn.push(deliver)
                    self.counters["redelivered"] += 1

    def _end_subscription(self, sub: _Subscription) -> None:
        if self._subs.get(sub.recv_id) is sub:
            del self._subs[sub.recv_id]
        if sub.task is not None:
            sub.task.cancel()

    # ---- expiry ------------------------------------------------------------------------

    async def _expire_forever(self) -> None:
        assert self._committer is not None
        while True:
            await asyncio.sleep(self.config.expiry_sweep_seconds)
            cutoff = expiry_cutoff(self._clock.now(), self.config.expiry_seconds)
            result = await self._committer.submit_and_wait(ExpireMessages(cutoff))
            if result is not None:
                self.counters["expired"] += result.count
            for sub in list(self._subs.values()):
                if sub.window.forget_expired(cutoff):
                    sub.poke()
            await self._expire_mailboxes()
            now = self._clock.monotonic()
            for address in [a for a, c in self._clients.items() if c.idle(now, self.config)]:
                del self._clients[address]

    async def _expire_mailboxes(self) -> None:
        """Delete mailboxes unused past ``mailbox_expiry_seconds``; subscribed ones are in use
        (marked so in the store every quarter of that period, not on every sweep)."""
        assert self._committer is not None
        expiry = self.config.mailbox_expiry_seconds
        now = self._clock.monotonic()
        in_use = []
        for sub in self._subs.values():
            if now - sub.touched_at >= expiry / 4:
                sub.touched_at = now
                in_use.append(sub.recv_id)
        cutoff = expiry_cutoff(self._clock.now(), expiry)
        result = await self._committer.submit_and_wait(ExpireMailboxes(cutoff, tuple(in_use)))
        if result is not None and result.count:
            self.counters["mailboxes_expired"] += result.count
            self._by_recv.clear()  # (records of deleted mailboxes must not be found again)
            self._by_send.clear()

    # ---- store access ------------------------------------------------------------------

    def _commit(
        self,
        op: AddMailbox | PutMessage | DeleteMessage | TouchMailbox,
        done: Callable[[WriteResult | None], None],
    ) -> None:
        assert self._committer is not None
        self._committer.submit(op, done)

    async def _watch_stalls(self) -> None:
        """Look at the database thread every second (StallWatch: a hang fails nothing)."""
        while True:
            await asyncio.sleep(1.0)
            self._stalls.check()

    async def _db(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a store call on the single database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _mailbox(self, mailbox_id: bytes, *, by_send: bool) -> MailboxRecord | _Unreadable | None:
        """The mailbox record; None if there is no such mailbox; UNREADABLE if the store failed."""
        cache = self._by_send if by_send else self._by_recv
        record = cache.get(mailbox_id)
        if record is not None:
            return record
        assert self._store is not None
        lookup = self._store.mailbox_by_send if by_send else self._store.mailbox_by_recv
        try:
            record = await self._db(lookup, mailbox_id)
        except BackchannelError as exc:
            failure = exc if isinstance(exc, StorageError) else StorageError(str(exc))
            self._health.failed("a mailbox record read", failure)
            return UNREADABLE
        if record is not None:
            self._remember(record)
        return record

    def _remember(self, record: MailboxRecord) -> None:
        if len(self._by_recv) >= MAILBOX_CACHE:
            self._by_recv.clear()
            self._by_send.clear()
        self._by_recv[record.recv_id] = record
        self._by_send[record.send_id] = record


def _ignore(result: WriteResult | None) -> None:
    """The callback of a write nobody waits for (a failure was logged by the committer)."""


async def _never_upgraded(ws: ServerConnection) -> None:
    """The metrics address answers every request in ``process_request``; nothing upgrades."""
    await ws.close()


def _address_of(ws: ServerConnection) -> str:
    """The client's source address (host only: one host's connections share its limits)."""
    try:
        remote = ws.remote_address
    except Exception:
        return "?"
    return str(remote[0]) if remote else "?"


def _url(scheme: str, host: str, server: Server) -> str:
    port = server.sockets[0].getsockname()[1] if server.sockets else 0
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _peek_type(message: str | bytes) -> int:
    """The frame type byte of a request, before it is decoded (0 if there is none)."""
    return message[1] if isinstance(message, bytes) and len(message) >= 2 else 0


def _peek_request_id(message: str | bytes) -> int:
    """The request id of a frame too broken to decode, so the error can still be matched."""
    if isinstance(message, bytes) and len(message) >= frames.HEADER.size:
        return int(frames.HEADER.unpack_from(message)[2])
    return 0


def _verify(key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


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

    The one stdout line ``relay listening on ws://HOST:PORT`` is a contract: tests and the
    CLI parse it. Logs go to stderr.
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


class _WatchedExecutor(ThreadPoolExecutor):
    """The one database thread; every call it runs is timed by the StallWatch."""

    def __init__(self, stalls: StallWatch) -> None:
        super().__init__(max_workers=1, thread_name_prefix="relay-db")
        self._stalls = stalls

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        timed = cast(Callable[..., _T], self._stalls.wrap(fn))
        return super().submit(timed, *args, **kwargs)
