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

Nothing a client sends can crash the relay or another connection: every frame is decoded
in a ``try``, every failure becomes an ``ERROR`` reply and a counter, and the payloads are
never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from backchannel import aio
from backchannel.clock import Clock, Rng, SystemClock, SystemRng
from backchannel.errors import (
    BackchannelError,
    FrameTooLarge,
    ProtocolError,
    TransportError,
    UnsupportedVersion,
)
from backchannel.proto import frames
from backchannel.proto.frames import FrameType, RelayErrorCode
from backchannel.relay.committer import GroupCommitter
from backchannel.relay.config import RelayConfig
from backchannel.relay.connection import RelayConnection
from backchannel.relay.mailbox import PushWindow, QueueLimits, expiry_cutoff
from backchannel.relay.storage.base import (
    AddMailbox,
    DeleteMessage,
    ExpireMessages,
    MailboxRecord,
    MailboxStore,
    Outcome,
    PutMessage,
    WriteResult,
)
from backchannel.relay.storage.postgres import PostgresMailboxStore, is_postgres_url
from backchannel.relay.storage.sqlite import SqliteMailboxStore

_LOG = logging.getLogger("backchannel.relay")
_T = TypeVar("_T")

#: Frames up to this much larger than the limit are still read, so that the client gets a
#: TOO_LARGE error and keeps its connection; beyond it the WebSocket layer closes (1009).
OVERSIZE_SLACK = 64 * 1024
#: Immutable mailbox records cached in memory (mailboxes are never deleted).
MAILBOX_CACHE = 65_536

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
    "storage_errors",  # failed transactions or reads
    "internal",  # requests answered INTERNAL
)


class _Unreadable(enum.Enum):
    """A mailbox lookup that failed in the store (as opposed to "no such mailbox")."""

    UNREADABLE = "unreadable"


UNREADABLE = _Unreadable.UNREADABLE


@dataclass(eq=False)
class _Subscription:
    recv_id: bytes
    conn: RelayConnection
    window: PushWindow
    #: Set to make the pump look again: at the store if ``dirty``, else only at its timer.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Rows after the cursor may be waiting to be pushed: the pump must read the store.
    dirty: bool = False
    task: asyncio.Task[None] | None = None
    #: True while the pump has pushed every stored row and is not reading the store: a
    #: newly stored frame can then be pushed straight from memory, saving a store read.
    caught_up: bool = False

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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-db")
        self._limits = QueueLimits(config.max_mailbox_depth, config.max_mailboxes)
        self._committer: GroupCommitter | None = None
        self._subs: dict[bytes, _Subscription] = {}
        self._by_recv: dict[bytes, MailboxRecord] = {}
        self._by_send: dict[bytes, MailboxRecord] = {}
        self._open_connections = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._ws_server: Server | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> str:
        """Open the store, start listening; return the URL actually listened on."""
        store: MailboxStore
        if self._store_given is not None:
            store = self._store_given
        else:
            opener = PostgresMailboxStore if is_postgres_url(self.config.db_path) else SqliteMailboxStore
            store = await self._db(opener, self.config.db_path)
        self._store = store
        self._committer = GroupCommitter(store, self._executor, self._limits, self._clock, self.counters)
        self._tasks = [
            asyncio.create_task(self._committer.run(), name="relay-committer"),
            asyncio.create_task(self._expire_forever(), name="relay-expiry"),
        ]
        frame_limit = frames.HEADER.size + 2 * frames.ID_LEN + self.config.max_payload
        try:
            self._ws_server = await serve(
                self._handle,
                self.config.host,
                self.config.port,
                compression=None,
                max_size=frame_limit + OVERSIZE_SLACK,
                process_request=self._process_request,
                ping_interval=self.config.ping_interval_seconds,
                ping_timeout=self.config.ping_timeout_seconds,
            )
        except OSError as exc:
            raise TransportError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from exc
        port = self._ws_server.sockets[0].getsockname()[1] if self._ws_server.sockets else 0
        host = self.config.host
        self.url = f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop accepting, close connections, commit what was accepted, close the store."""
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
            self._ws_server = None
        for sub in list(self._subs.values()):
            self._end_subscription(sub)
        if self._committer is not None:
            await self._committer.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._store is not None:
            await self._db(self._store.close)
            self._store = None
        self._executor.shutdown(wait=True)

    # ---- HTTP side door ----------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer ``GET /health`` and ``GET /metrics`` without a WebSocket handshake."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return connection.respond(HTTPStatus.OK, self.metrics_text())
        return None

    def metrics_text(self) -> str:
        """The counters in the Prometheus text format."""
        lines = [f"backchannel_relay_{name}_total {value}" for name, value in self.counters.items()]
        lines.append(f"backchannel_relay_open_connections {self._open_connections}")
        lines.append(f"backchannel_relay_subscriptions {len(self._subs)}")
        return "\n".join(lines) + "\n"

    # ---- one connection ----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn = RelayConnection(ws, self._rng.bytes(frames.NONCE_LEN))
        self.counters["connections"] += 1
        self._open_connections += 1
        conn.push(frames.Welcome(conn.nonce))
        reader = asyncio.create_task(self._read_loop(conn))
        flusher = asyncio.create_task(conn.flush_forever())
        try:
            done, _ = await asyncio.wait({reader, flusher}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    _LOG.error("relay: connection task failed", exc_info=task.exception())
        finally:
            reader.cancel()
            flusher.cancel()
            await asyncio.gather(reader, flusher, return_exceptions=True)
            self._open_connections -= 1
            for recv_id in conn.receivers:
                sub = self._subs.get(recv_id)
                if sub is not None and sub.conn is conn:
                    self._end_subscription(sub)

    async def _read_loop(self, conn: RelayConnection) -> None:
        try:
            async for message in conn.ws:
                await conn.slots.acquire()
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
        record = MailboxRecord(
            recv_id=self._rng.bytes(frames.ID_LEN),
            send_id=self._rng.bytes(frames.ID_LEN),
            recv_key=frame.recv_key,
            send_key=frame.send_key,
            created_at=self._clock.now(),
        )

        def done(result: WriteResult | None) -> None:
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
        conn.receivers.add(frame.recv_id)
        conn.reply(frames.Ok(frame.request_id))  # queued before any DELIVER of this mailbox
        old = self._subs.get(frame.recv_id)
        if old is not None:
            self.counters["takeovers"] += 1
            self._end_subscription(old)
        window = PushWindow(self.config.push_window, self.config.redeliver_seconds)
        sub = _Subscription(frame.recv_id, conn, window)
        self._subs[frame.recv_id] = sub
        sub.task = asyncio.create_task(self._pump(sub), name="relay-pump")
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

        def done(result: WriteResult | None) -> None:
            if result is None:
                self._internal(conn, rid)
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
                    if sub is not None and sub.caught_up and sub.window.fetch_limit() > 0:
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
                while (limit := sub.window.fetch_limit()) > 0:
                    rows = await self._db(self._store.messages_after, sub.recv_id, sub.window.cursor, limit)
                    if self._subs.get(sub.recv_id) is not sub:
                        return
                    now = self._clock.monotonic()
                    for row in rows:
                        sub.window.pushed(row.seq, row.msg_id, row.stored_at, now)
                        sub.conn.push(frames.Deliver(row.recv_id, row.msg_id, row.payload))
                    self.counters["delivered"] += len(rows)
                    if len(rows) < limit:
                        sub.caught_up = not sub.dirty  # (dirty: a commit came during the read)
                        break
            except BackchannelError as exc:
                _LOG.error("relay: cannot read a mailbox: %s", exc)
                self.counters["storage_errors"] += 1
                await asyncio.sleep(1.0)
                sub.poke()

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
                sub.conn.push(frames.Deliver(row.recv_id, row.msg_id, row.payload))
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

    # ---- store access ------------------------------------------------------------------

    def _commit(
        self, op: AddMailbox | PutMessage | DeleteMessage, done: Callable[[WriteResult | None], None]
    ) -> None:
        assert self._committer is not None
        self._committer.submit(op, done)

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
            _LOG.error("relay: cannot read a mailbox record: %s", exc)
            self.counters["storage_errors"] += 1
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
