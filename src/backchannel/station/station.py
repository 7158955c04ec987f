"""The station: one party's end of its lines. The facade the CLI, the console and programs use.

Theory of operation
-------------------
A station is one asyncio process around three things: the pure protocol core
(:mod:`backchannel.proto.line`), the durable :class:`~backchannel.station.store.Store`, and
one :class:`~backchannel.station.relay_link.RelayLink` per relay.

*Sending.* :meth:`Station.send` seals the message (assigning its sequence number and
advancing Olm) and stores the frame, the new session and the transcript in one transaction.
Only after the commit does the frame join the send queue, so a crash before the commit loses
nothing the operator was told about, and a crash after it resends the very same bytes.
The :class:`~backchannel.station.delivery.Sender` pushes queued frames to every circuit
(relay) of the line and marks them *relayed* when a relay answers *stored*.

*Receiving.* Frames from every relay land in one queue. The receive loop takes them in
batches and, inside one transaction per batch, authenticates each envelope, drops
duplicates, holds early frames, decrypts the next in-order frames, applies receipts, stores
messages, and seals a cumulative *delivered* receipt. Only after the commit does it
acknowledge the frames to their relays (which then delete them). Every step is idempotent:
a crash anywhere replays safely.

The in-memory copy of each line (protocol state and Olm session) mirrors the database; if a
transaction fails, the copies are reloaded from disk so memory never runs ahead of the disk.

The station's parts, one concept each: :mod:`pairing` (invite, accept), :mod:`receiver` (the
receive path), :mod:`delivery` (the sender and waiters), :mod:`monitor` and :mod:`linkcheck`
(link tests, health, alarms), :mod:`recorder` (the record), :mod:`circuits` (in-band circuit
changes), :mod:`release` (the two-person rule), :mod:`store` (all SQL), :mod:`keystore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from backchannel.aio import TaskSet
from backchannel.clock import Clock, Rng, SystemClock, SystemRng, ms
from backchannel.errors import (
    BackchannelError,
    InvalidArgument,
    LineNotReady,
    MessageTooLarge,
    RecordInvalid,
    StationAlreadyInitialised,
    StationNotInitialised,
    TransportError,
    UnknownLine,
    UnknownMessage,
)
from backchannel.proto import line as proto_line
from backchannel.proto.export import VerifiedExport, verify_export
from backchannel.proto.identity import identity_document
from backchannel.proto.invitation import (
    valid_name,
)
from backchannel.proto.keyschedule import LineKeys
from backchannel.proto.line import LineState, SealedFrame
from backchannel.proto.payloads import (
    MAX_TEXT_BYTES,
    Acknowledged,
    Message,
    Payload,
    Precedence,
)
from backchannel.proto.primitives import (
    MLDSA_SEED_LEN,
    ed25519_public_from_seed,
    ed25519_sign,
    require_mlkem,
)
from backchannel.proto.safety import grouped, safety_number
from backchannel.proto.session import Identity, OlmSession
from backchannel.proto.transcript import Transcript
from backchannel.station.alarm_sinks import AlarmDispatcher, sinks_from_config
from backchannel.station.alarms import Alarms, AlarmView
from backchannel.station.circuits import RETIRED_READ_SECONDS, CircuitChanges
from backchannel.station.config import StationConfig
from backchannel.station.delivery import Sender, Waiters
from backchannel.station.flood import FloodGuard
from backchannel.station.keystore import AtRest, check_new_passphrase, create_keystore, open_keystore
from backchannel.station.liveline import LiveLine
from backchannel.station.monitor import Monitor
from backchannel.station.pairing import Pairing
from backchannel.station.private import secure_home
from backchannel.station.receiver import Receiver
from backchannel.station.recorder import Recorder
from backchannel.station.recovery import RESEND_LIMIT, PeerReport
from backchannel.station.relay_link import Delivery, ReceiveLimit, RelayLink
from backchannel.station.relay_url import shown
from backchannel.station.release import Releases
from backchannel.station.store import InboxRow, OutboxRow, Store
from backchannel.station.views import (
    DraftView,
    InvitationView,
    LineView,
    MessageView,
    TranscriptView,
    VerificationView,
)

log = logging.getLogger("backchannel.station")

KEYSTORE = "keystore.bcks"
DATABASE = "station.db"
CONFIG = "station.toml"
RECEIVE_BATCH = 512
#: Seconds over which a relay's useless frames are counted (see ``station.flood``).
FLOOD_WINDOW = 10.0
STATUS_LEVELS = ("queued", "relayed", "delivered", "acknowledged")


class Station:
    """One station. Create with :meth:`init` once, then :meth:`open`, ``await start()``.

    All methods are meant to be called from the event loop thread that called
    :meth:`start`. Read methods (``lines``, ``inbox``, ``status``, ``verify``) also work
    before ``start``; methods that talk to relays need it.
    """

    def __init__(
        self,
        home: Path,
        store: Store,
        atrest: AtRest,
        identity: Identity,
        name: str,
        config: StationConfig,
        clock: Clock,
        rng: Rng,
    ) -> None:
        self.home = home
        self.name = name
        self.config = config
        self._store = store
        self._atrest = atrest
        self._identity = identity
        self._clock = clock
        self._rng = rng
        self._lines: dict[bytes, LiveLine] = {}
        self._links: dict[str, RelayLink] = {}
        self._mailbox_urls: dict[bytes, str] = {}  # our recv_id -> relay url
        #: Unbounded as a queue, bounded in fact: each link puts at most its ReceiveLimit.
        self._deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self.flood = FloodGuard(config.flood_limit, FLOOD_WINDOW, config.flood_suspend_seconds)
        #: The station's own tasks (the receive loop, link start-ups), ended by close();
        #: links being closed (a removed circuit) are waited for on their own.
        self._tasks = TaskSet("station")
        self._closing_links = TaskSet("closing relay links")
        self._send_batch: list[
            tuple[
                LiveLine,
                Precedence,
                str,
                str | None,
                asyncio.Future[tuple[int, asyncio.Future[None] | None]],
                tuple[str, str, str] | None,
            ]
        ] = []
        self._peer_caps: dict[bytes, dict[str, bytes]] = {}  # line -> circuit url -> send id
        self._after_commit: list[Callable[[], object]] = []
        self._verified: dict[bytes, tuple[str, VerifiedExport]] = {}
        self.waiters = Waiters()
        self.sender = Sender(self, config)
        self.dispatcher: AlarmDispatcher | None = None
        self.alarms = Alarms(store, name, clock, rng, self.line_name, self._dispatch_alarm)
        self.monitor = Monitor(self)
        self._started = False
        self.recorder = Recorder(self, store, atrest, clock)
        self.receiver = Receiver(self)
        self.pairing = Pairing(self)
        self.releases = Releases(self)
        self.circuits = CircuitChanges(self)
        self._load_lines()

    # ---- lifecycle -----------------------------------------------------------------------

    @classmethod
    def init(cls, home: Path, name: str, passphrase: str) -> None:
        """Create a new station in ``home``: keystore, database and identity."""
        require_mlkem()
        if not valid_name(name):
            raise InvalidArgument("a station name must be 1 to 64 bytes of printable text")
        check_new_passphrase(passphrase)
        if (home / KEYSTORE).exists():
            raise StationAlreadyInitialised(f"a station already lives in {home}; it was left untouched")
        secure_home(home)
        store_key = create_keystore(home / KEYSTORE, passphrase)
        store = Store.open(home / DATABASE)
        identity = Identity.generate()
        with store.transaction():
            store.set_meta("name", name.encode("utf-8"))
            store.set_meta("account", identity.pickle(store_key).encode("ascii"))
            store.set_meta("mldsa", AtRest(store_key).seal(SystemRng().bytes(MLDSA_SEED_LEN), b"mldsa-seed"))
        store.close()

    @classmethod
    def open(
        cls,
        home: Path,
        passphrase: str,
        config: StationConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: Rng | None = None,
    ) -> Station:
        """Open an existing station; raises ``WrongPassphrase`` for a wrong passphrase."""
        require_mlkem()
        if not (home / KEYSTORE).exists():
            raise StationNotInitialised(f"no station lives in {home}. Run `backchannel init` first.")
        store_key = open_keystore(home / KEYSTORE, passphrase)
        secure_home(home)
        store = Store.open(home / DATABASE)
        account = store.get_meta("account")
        name = store.get_meta("name")
        if account is None or name is None:
            raise StationNotInitialised(f"the station in {home} was not fully initialised; init again")
        identity = Identity.from_pickle(account.decode("ascii"), store_key)
        config = config or StationConfig.load(home / CONFIG)
        rng = rng or SystemRng()
        return cls(
            home,
            store,
            AtRest(store_key, rng),
            identity,
            name.decode("utf-8"),
            config,
            clock or SystemClock(),
            rng,
        )

    async def start(self) -> None:
        """Connect to every relay the lines use and start sending and receiving."""
        if self._started:
            return
        self._started = True
        sinks = sinks_from_config(list(self.config.alarm_command) or None, self.config.alarm_webhook)
        if sinks:
            self.dispatcher = AlarmDispatcher(sinks, on_result=self._alarm_delivery_result)
        with self._store.transaction():
            self._store.prune_retired(self._clock.now() - RETIRED_READ_SECONDS)
        for _, url, recv_id, recv_sealed in self._store.mailboxes() + self._store.mailboxes(retired=True):
            self._subscribe(url, recv_id, self._atrest.open(recv_sealed, b"recv-key" + recv_id))
        for line_id, url, send_id, send_sealed in self._store.peer_mailboxes():
            self._add_sender(line_id, url, send_id, self._atrest.open(send_sealed, b"send-key" + send_id))
        self._tasks.spawn(self.receiver.run(), "receive")
        await self.sender.start(self._store.unsent())
        await self.monitor.start()

    async def close(self) -> None:
        """Stop all tasks and close connections and the database. Nothing durable is lost."""
        await self.monitor.stop()
        await self.sender.stop()
        await self.circuits.close()
        await self._tasks.close()
        for link in self._links.values():
            await link.close()
        self._links.clear()
        await self._closing_links.join()
        self.waiters.fail_all(TransportError("the station is shutting down"))
        if self.dispatcher is not None:
            await self.dispatcher.close(5.0)
        self._store.close()

    # ---- links -----------------------------------------------------------------------------

    def link(self, url: str) -> RelayLink:
        link = self._links.get(url)
        if link is None:
            link = RelayLink(
                url,
                self._deliveries,
                clock=self._clock,
                on_connected=functools.partial(self._on_link_state, url),
                request_timeout=self.config.relay_request_timeout,
                receive_limit=ReceiveLimit(self.config.receive_frames, self.config.receive_bytes),
            )
            self._links[url] = link
            self._tasks.spawn(link.start(), "relay-link start")
        return link

    def _subscribe(self, url: str, recv_id: bytes, seed: bytes) -> None:
        self._mailbox_urls[recv_id] = url
        self.link(url).subscribe(recv_id, functools.partial(ed25519_sign, seed))

    def _add_sender(self, line_id: bytes, url: str, send_id: bytes, seed: bytes) -> None:
        self._peer_caps.setdefault(line_id, {})[url] = send_id
        self.link(url).add_sender(send_id, functools.partial(ed25519_sign, seed))

    def release_link(self, url: str) -> None:
        """Close the link to a relay nothing uses any more (a removed circuit): no connection
        is kept, nor re-established forever, to a relay the line left."""
        link = self._links.get(url)
        if link is None or link.in_use():
            return
        del self._links[url]
        self.flood.forget(url)
        self.sender.forget(url)
        self._closing_links.spawn(link.close(), f"relay-link close {link.shown_url}")

    def links_open(self) -> int:
        return len(self._links)

    def check_floods(self) -> None:
        """Suspend every relay whose useless frames reached the limit (``station.flood``)."""
        now = self._clock.now()
        for url, useless, seconds in self.flood.tripped(now):
            link = self._links.get(url)
            if link is None:
                continue
            log.error(
                "relay %s flooded this station with %d frames it had to drop within %g s; "
                "not connecting to it for %g s",
                url,
                useless,
                FLOOD_WINDOW,
                seconds,
            )
            link.suspend(seconds)
            with contextlib.suppress(BackchannelError), self._store.transaction(durable=False):
                self._store.count("relay_suspended")
            self.monitor.relay_flooded(url, useless, now + seconds)

    def _on_link_state(self, url: str, up: bool) -> None:
        self.sender.on_link_state(url, up)
        self.monitor.on_link_state(url, up)

    def link_connected(self, url: str) -> bool:
        link = self._links.get(url)
        return link is not None and link.connected

    def circuit_urls(self, line_id: bytes) -> list[str]:
        """The relays this line's frames go through: one circuit each."""
        return sorted(self._peer_caps.get(line_id, {}))

    def send_id(self, line_id: bytes, url: str) -> bytes | None:
        return self._peer_caps.get(line_id, {}).get(url)

    async def _new_mailbox(self, url: str) -> tuple[bytes, bytes, bytes, bytes]:
        """Create one of our inbound mailboxes; returns (recv_id, recv_seed, send_id, send_seed)."""
        recv_seed, send_seed = self._rng.bytes(32), self._rng.bytes(32)
        link = self.link(url)
        recv_id, send_id = await link.create_mailbox(
            ed25519_public_from_seed(recv_seed), ed25519_public_from_seed(send_seed)
        )
        return recv_id, recv_seed, send_id, send_seed

    # ---- pairing (see pairing.py) ------------------------------------------------------------

    async def invite(
        self, relay: str | list[str] | None = None, name: str | None = None, on_record: bool = True
    ) -> InvitationView:
        """Create an invitation for a new line, to be carried to the other station out of band.

        Each relay given becomes one circuit of the line; ``on_record`` chooses a line on the
        record (signed, provable to third parties) or off it (deniable).
        """
        return await self.pairing.invite(relay, name, on_record)

    async def accept(self, text: str, name: str | None = None) -> LineView:
        """Accept an invitation: open the line and send the hello to the inviter."""
        return await self.pairing.accept(text, name)

    def _save_account(self) -> None:
        self._store.set_meta("account", self._identity.pickle(self._atrest.store_key).encode("ascii"))

    # ---- line state in memory and on disk --------------------------------------------------

    def _load_lines(self) -> None:
        self._lines.clear()
        for row in self._store.list_lines():
            keys_raw = self._atrest.open(row.keys_sealed, b"line-keys" + row.line_id)
            state = LineState(
                line_id=row.line_id,
                role=row.role,
                keys=LineKeys(keys_raw[:32], keys_raw[32:]),
                next_seq=row.next_seq,
                delivered_upto=row.delivered_upto,
                transcript=Transcript(
                    row.line_id, (row.tx_count0, row.tx_count1), (row.tx_head0, row.tx_head1)
                ),
                on_record=bool(row.on_record),
            )
            session = OlmSession.from_pickle(row.session_pickle, self._atrest.store_key)
            self._lines[row.line_id] = LiveLine(row, state, session)

    @contextlib.contextmanager
    def _mutation(self) -> Iterator[None]:
        """A store transaction whose failure also resets the in-memory state to the disk's.

        That is the lines (protocol state, Olm sessions) and the Olm account, whose one-time
        key a hello being opened may already have spent in memory.
        """
        try:
            with self._store.transaction():
                yield
        except BaseException:
            self._load_lines()
            account = self._store.get_meta("account")
            if account is not None:
                self._identity = Identity.from_pickle(account.decode("ascii"), self._atrest.store_key)
            raise

    def _persist(self, live: LiveLine, **extra: object) -> None:
        t = live.state.transcript
        fields: dict[str, object] = dict(
            session_pickle=live.session.pickle(self._atrest.store_key),
            next_seq=live.state.next_seq,
            delivered_upto=live.state.delivered_upto,
            tx_count0=t.counts[0],
            tx_head0=t.heads[0],
            tx_count1=t.counts[1],
            tx_head1=t.heads[1],
        )
        fields.update(extra)
        self._store.update_line(live.line_id, **fields)
        live.row = replace(live.row, **fields)  # type: ignore[arg-type]

    def _seal(self, live: LiveLine, payload: Payload) -> SealedFrame:
        """Seal the next entry of our direction and record it (inside the caller's transaction)."""
        live.state, sealed = proto_line.seal_payload(
            live.state, live.session, payload, self._rng, self._identity.sign
        )
        direction = live.state.out_direction
        self.recorder.record(
            live.line_id, direction, sealed.seq, live.state.transcript.heads[direction], sealed.payload
        )
        return sealed

    def _line(self, name_or_id: str) -> LiveLine:
        row = self._store.find_line(name_or_id)
        if row is None or row.line_id not in self._lines:
            raise UnknownLine(f"there is no line {name_or_id!r}. `backchannel lines` lists the lines.")
        return self._lines[row.line_id]

    def _body(self, line_id: bytes, direction: str, seq: int, text: str) -> bytes:
        return self._atrest.seal(
            text.encode("utf-8"), b"body" + line_id + direction.encode() + seq.to_bytes(8, "big")
        )

    def _text(self, line_id: bytes, direction: str, seq: int, sealed: bytes) -> str:
        ctx = b"body" + line_id + direction.encode() + seq.to_bytes(8, "big")
        return self._atrest.open(sealed, ctx).decode("utf-8")

    # ---- sending ---------------------------------------------------------------------------

    async def send(
        self,
        line: str,
        text: str,
        precedence: str | Precedence = Precedence.ROUTINE,
        wait: str | None = None,
        timeout: float = 30.0,
        operator: str | None = None,
    ) -> MessageView | DraftView:
        """Queue a message durably and start sending it on every circuit of the line.

        Returns once the message is stored (status *queued*), or, with ``wait`` set to
        ``relayed``, ``delivered`` or ``acknowledged``, once it reached that status. On a
        line under the two-person rule the message is held instead (a :class:`DraftView`,
        *awaiting release*) until another operator releases it with :meth:`release`.
        """
        live = self._line(line)
        try:
            prec = Precedence(precedence.upper() if isinstance(precedence, str) else precedence)
        except ValueError:
            raise InvalidArgument(
                f"unknown precedence {precedence!r}: use FLASH, IMMEDIATE, PRIORITY or ROUTINE"
            ) from None
        if not text:
            raise InvalidArgument("the message is empty")
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise MessageTooLarge(f"the message is longer than {MAX_TEXT_BYTES} bytes; split it")
        if wait is not None and wait not in STATUS_LEVELS[1:]:
            raise InvalidArgument("wait must be one of relayed, delivered, acknowledged")
        if self.config.needs_release(live.row.name, prec.value):
            return self.releases.hold(live, prec, text, operator)
        seq, waiter = await self._queue_send(live, prec, text, wait)
        if waiter is not None:
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                raise TransportError(
                    f"the message is queued as {live.row.name}:out/{seq} but was not {wait} "
                    f"within {timeout:g} s; it will keep trying"
                ) from None
        return self.message(live.row.name, seq, "out")

    # ---- release authority (see release.py) -----------------------------------------------

    def drafts(self, line: str | None = None) -> list[DraftView]:
        """Messages awaiting release by a second operator (visible to everyone)."""
        return self.releases.drafts(line)

    def draft(self, draft_id: str) -> DraftView:
        return self.releases.draft(draft_id)

    async def release(
        self,
        draft_id: str,
        operator: str,
        password: str | None = None,
        wait: str | None = None,
        timeout: float = 30.0,
    ) -> MessageView:
        """Release a held message: it is sealed and sent now (the control socket's ``release``).

        ``operator`` must be a releaser (or admin) other than the drafter and prove it with
        their console password; every release and refusal is audited (see ``release.py``).
        """
        return await self.releases.release(draft_id, operator, password, wait, timeout)

    async def release_as(
        self, draft_id: str, operator: str, via: str, wait: str | None = None, timeout: float = 30.0
    ) -> MessageView:
        """Release on behalf of an operator ``via`` already authenticated (the console session)."""
        return await self.releases.release_as(draft_id, operator, via, wait, timeout)

    def _queue_send(
        self,
        live: LiveLine,
        precedence: Precedence,
        text: str,
        wait: str | None,
        release: tuple[str, str, str] | None = None,
    ) -> asyncio.Future[tuple[int, asyncio.Future[None] | None]]:
        """Join the next group commit; resolves to (sequence number, waiter) once durable.

        Sends that arrive in the same turn of the event loop (pipelined on the control
        socket, or from concurrent callers) are sealed and stored in one transaction: one
        disk flush for all of them, with each still encrypted once and stored before it is sent.
        """
        future: asyncio.Future[tuple[int, asyncio.Future[None] | None]]
        future = asyncio.get_running_loop().create_future()
        self._send_batch.append((live, precedence, text, wait, future, release))
        if len(self._send_batch) == 1:
            asyncio.get_running_loop().call_soon(self._commit_sends)
        return future

    def _commit_sends(self) -> None:
        batch, self._send_batch = self._send_batch, []
        now = self._clock.now()
        sealed: list[tuple[bytes, int]] = []
        try:
            with self._mutation():
                for queued, precedence, text, _, _, release in batch:
                    # By id: a failed transaction since the send was queued replaced the objects.
                    live = self._lines[queued.line_id]
                    frame = self._seal(live, Message(precedence, text, ms(now)))
                    body = self._body(live.line_id, "out", frame.seq, text)
                    self._store.add_outbound(
                        live.line_id, frame.seq, "msg", frame.frame, now, precedence.value, body
                    )
                    if release is not None:  # in the same transaction: sent once, and audited
                        draft_id, operator, note = release
                        self._store.mark_released(draft_id, operator, now, frame.seq)
                        detail = f"{live.row.name}:{frame.seq} {precedence.value} draft {draft_id}, {note}"
                        self._store.add_audit(now, operator, "release", detail)
                    sealed.append((live.line_id, frame.seq))
                for line_id in {item[0].line_id for item in batch}:
                    self._persist(self._lines[line_id])
        except Exception as exc:
            for item in batch:
                if not item[4].done():
                    item[4].set_exception(exc)
            return
        for (line_id, seq), (_, _, _, wait, future, _) in zip(sealed, batch, strict=True):
            waiter = self.waiters.register(line_id, seq, wait) if wait else None
            if not future.done():
                future.set_result((seq, waiter))
        self.sender.enqueue(sealed)

    async def ack(self, line: str, seq: int, operator: str) -> MessageView:
        """Record that ``operator`` read received message ``seq``; tell the sender, signed by Olm."""
        live = self._line(line)
        if not valid_name(operator):
            raise InvalidArgument("an operator name of 1 to 64 bytes of printable text is required")
        row = self._store.inbound_one(live.line_id, seq)
        if row is None:
            raise UnknownMessage(f"no received message {seq} on line {live.row.name!r}")
        if row.acked_at is None:
            now = self._clock.now()
            with self._mutation():
                self._store.ack_inbound(live.line_id, seq, operator, now)
                ack_seq = self.send_payload(
                    live.line_id, Acknowledged(seq, operator, ms(now)), "ack", enqueue=False
                )
            self.sender.enqueue([(live.line_id, ack_seq)])
        return self.message(live.row.name, seq, "in")

    def send_payload(self, line_id: bytes, payload: Payload, kind: str, enqueue: bool = True) -> int:
        """Seal a control payload (receipt, link test, ...), store it, then queue it to send.

        Inside a larger transaction, pass ``enqueue=False`` and enqueue after that commits.
        """
        live = self._lines[line_id]
        now = self._clock.now()
        with self._mutation():
            sealed = self._seal(live, payload)
            self._store.add_outbound(line_id, sealed.seq, kind, sealed.frame, now)
            self._persist(live)
        if enqueue:
            self.sender.enqueue([(line_id, sealed.seq)])
        return sealed.seq

    def may_send(self, line_id: bytes, seq: int) -> bool:
        """Whether the frame may leave now: an accepter sends only its hello until welcomed."""
        live = self._lines.get(line_id)
        return live is not None and (live.established or seq == 1)

    def outbound_frame(self, line_id: bytes, seq: int) -> bytes:
        return self._store.frame(line_id, seq)

    def mark_sent(self, items: list[tuple[bytes, int, str]]) -> None:
        """Circuits stored these frames. Bookkeeping only: if a power cut loses it, the
        frames are sent again, harmlessly."""
        with self._store.transaction(durable=False):
            self._store.record_sent(items, self._clock.now())
        for line_id, seq, _ in items:
            self.waiters.reached(line_id, seq, "relayed")

    # ---- what the monitor needs ------------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def established_lines(self) -> list[bytes]:
        return [line_id for line_id, live in self._lines.items() if live.established]

    def line_name(self, line_id: bytes) -> str:
        live = self._lines.get(line_id)
        return live.row.name if live else line_id.hex()[:8]

    def out_direction(self, line_id: bytes) -> int:
        return self._lines[line_id].state.out_direction

    def peer_seen(self, line_id: bytes) -> int:
        """How many of our frames the peer's latest entry in the record said it had."""
        live = self._lines.get(line_id)
        return 0 if live is None else self.recorder.peer_seen(live)

    def peer_name(self, line_id: bytes) -> str:
        live = self._lines.get(line_id)
        return live.row.peer_name if live else "the peer"

    def find_line_id(self, name: str) -> bytes | None:
        row = self._store.find_line(name)
        return None if row is None else row.line_id

    def overdue_messages(self, now: float) -> list[tuple[bytes, int, str, float]]:
        """Sent messages whose acknowledgement deadline passed, not yet escalated."""
        out = []
        for line_id, live in self._lines.items():
            deadlines = self.config.deadlines_for(live.row.name)
            out += [o for o in self._store.overdue(now, deadlines) if o[0] == line_id]
        return out

    def resend_lacking(self, line_id: bytes, report: PeerReport, now: float, gap_since: float | None) -> int:
        """Send again, on every circuit, our frames the peer still lacks though a relay stored
        them (``station.recovery``); returns how many."""
        live = self._lines[line_id]
        resend_after = self.config.resend_after
        if report.has + 1 >= live.state.next_seq or (report.resent_at or 0.0) + resend_after > now:
            return 0  # (the cheap checks first: this runs on every tick)
        relayed = self._store.relayed_times(line_id, report.has + 1, report.has + RESEND_LIMIT)
        due = report.resend(relayed, now, resend_after, gap_since)
        if not due:
            return 0
        with contextlib.suppress(BackchannelError), self._store.transaction(durable=False):
            self._store.count("resent", len(due))  # (only a statistic)
        log.warning(
            "line %s: the peer still lacks %d frame(s) from %d on that a relay stored; sending them again",
            live.row.name,
            len(due),
            due[0],
        )
        self.sender.enqueue([(line_id, seq) for seq in due])
        return len(due)

    def mark_escalated(self, line_id: bytes, seq: int) -> None:
        with self._store.transaction():
            self._store.mark_escalated(line_id, seq, self._clock.now())

    # ---- alarms ----------------------------------------------------------------------------

    def _dispatch_alarm(self, event: dict[str, object]) -> None:
        log.warning("alarm %s: %s", event["state"], event["message"])
        if self.dispatcher is not None:
            self.dispatcher.dispatch(event)

    def _alarm_delivery_result(self, event: dict[str, object], sink: str, ok: bool, detail: str) -> None:
        if not ok:
            log.error("alarm %s could not be delivered to %s: %s", event.get("id"), sink, detail)
            with contextlib.suppress(BackchannelError), self._store.transaction(durable=False):
                self._store.count("alarm_delivery_failed")

    def list_alarms(self, include_cleared: bool = False) -> list[AlarmView]:
        return self.alarms.list(include_cleared)

    def ack_alarm(self, alarm_id: str, operator: str) -> AlarmView:
        if not valid_name(operator):
            raise InvalidArgument("an operator name of 1 to 64 bytes of printable text is required")
        view = self.alarms.acknowledge(alarm_id, operator)
        if view is None:
            raise InvalidArgument(f"there is no alarm {alarm_id!r}; `backchannel alarms --all` lists them")
        return view

    # ---- circuits (see circuits.py) ---------------------------------------------------------

    async def add_circuit(self, line: str, relay: str) -> LineView:
        """Add a circuit through another relay: our mailbox there, offered to the peer in-band."""
        return await self.circuits.add(line, relay)

    async def remove_circuit(self, line: str, relay: str) -> LineView:
        """Stop using a relay for this line, on both sides (told to the peer in-band)."""
        return await self.circuits.remove(line, relay)

    def circuit_proposals(self) -> list[dict[str, object]]:
        """Circuits the peer proposed that the relay policy holds for an operator's approval."""
        return self.circuits.pending()

    async def approve_circuit(self, proposal: str) -> LineView:
        """Add a circuit the peer proposed (held by ``relay_policy = "ask"``)."""
        return await self.circuits.approve(proposal)

    def reject_circuit(self, proposal: str) -> dict[str, object]:
        """Refuse a circuit the peer proposed; the peer is told."""
        return self.circuits.reject(proposal)

    # ---- receiving (see receiver.py) -------------------------------------------------------

    def receive_batch(self, batch: list[Delivery]) -> list[tuple[bytes, int]]:
        """Process frames from relays in one transaction; returns new frames to send."""
        return self.receiver.receive_batch(batch)

    def _receive_one_by_one(self, batch: list[Delivery]) -> tuple[list[tuple[bytes, int]], list[Delivery]]:
        sendable, done, _ = self.receiver._receive_one_by_one(batch)
        return sendable, done

    # ---- reading ---------------------------------------------------------------------------

    def lines(self) -> list[LineView]:
        return [
            self._line_view(self._lines[r.line_id])
            for r in self._store.list_lines()
            if r.line_id in self._lines
        ]

    def line(self, name: str) -> LineView:
        return self._line_view(self._line(name))

    def _line_view(self, live: LiveLine) -> LineView:
        row = live.row
        relays = sorted({url for _, url, _, _ in self._store.peer_mailboxes(row.line_id)})
        watch = self.monitor.watches.get(row.line_id)
        circuits = []
        for url in relays:
            health = watch.circuits.get(url) if watch else None
            info: dict[str, Any] = (
                health.to_json()
                if health
                else {
                    "url": url,
                    "state": "unknown",
                    "connected": self.link_connected(url),
                    "rtt_ms": None,
                    "last_in": None,
                    "last_out": None,
                }
            )
            info["url"] = shown(url)
            info["pending"] = self._store.pending_on_circuit(row.line_id, url)
            circuits.append(info)
        open_alarms = sum(1 for a in self._store.alarms() if a.line_id == row.line_id)
        return LineView(
            line_id=row.line_id.hex(),
            name=row.name,
            peer_name=row.peer_name,
            role="inviter" if row.role == proto_line.INVITER else "accepter",
            state=row.state,
            verified=row.verified_at is not None,
            verified_at=row.verified_at,
            on_record=bool(row.on_record),
            relays=[shown(u) for u in relays],  # (never the relay's access token)
            relays_connected=[shown(u) for u in relays if u in self._links and self._links[u].connected],
            sent=self._store.count_rows("outbox", row.line_id, "kind = 'msg'"),
            received=self._store.count_rows("inbox", row.line_id),
            unacknowledged=self._store.count_rows("inbox", row.line_id, "acked_at IS NULL"),
            last_contact=row.last_contact,
            transcript_head=live.state.transcript.head().hex(),
            health=(watch.state.value if watch else ("up" if relays else "down"))
            if live.established
            else "pairing",
            circuits=circuits,
            open_alarms=open_alarms,
        )

    def pending_invitations(self) -> list[dict[str, object]]:
        return [
            {"line_id": lid.hex(), "name": name, "created_at": at}
            for lid, name, at in self._store.pending_invitations()
        ]

    def inbox(
        self, line: str | None = None, unacknowledged: bool = False, limit: int = 100
    ) -> list[MessageView]:
        line_id = self._line(line).line_id if line else None
        return [self._in_view(r) for r in self._store.inbound(line_id, unacknowledged, limit)]

    def outbox(self, line: str | None = None, limit: int = 100) -> list[MessageView]:
        line_id = self._line(line).line_id if line else None
        return [self._out_view(r) for r in self._store.outbound(line_id, "msg", limit)]

    def message(self, line: str, seq: int, direction: str) -> MessageView:
        live = self._line(line)
        if direction == "out":
            out = self._store.outbound_one(live.line_id, seq)
            if out is None or out.kind != "msg":
                raise UnknownMessage(f"no sent message {seq} on line {live.row.name!r}")
            return self._out_view(out)
        inn = self._store.inbound_one(live.line_id, seq)
        if inn is None:
            raise UnknownMessage(f"no received message {seq} on line {live.row.name!r}")
        return self._in_view(inn)

    def _name(self, line_id: bytes) -> str:
        live = self._lines.get(line_id)
        return live.row.name if live else line_id.hex()[:8]

    def _out_view(self, r: OutboxRow) -> MessageView:
        status = (
            "acknowledged"
            if r.acked_at
            else "delivered"
            if r.delivered_at
            else "relayed"
            if r.relayed_at
            else "queued"
        )
        text = self._text(r.line_id, "out", r.seq, r.body_sealed) if r.body_sealed else ""
        return MessageView(
            self._name(r.line_id),
            r.seq,
            "out",
            r.precedence or "",
            text,
            status,
            r.created_at,
            r.relayed_at,
            r.delivered_at,
            r.acked_at,
            r.acked_by,
        )

    def _in_view(self, r: InboxRow) -> MessageView:
        return MessageView(
            self._name(r.line_id),
            r.seq,
            "in",
            r.precedence,
            self._text(r.line_id, "in", r.seq, r.body_sealed),
            "acknowledged" if r.acked_at else "received",
            r.sent_at,
            None,
            r.received_at,
            r.acked_at,
            r.acked_by,
        )

    def verify(self, line: str, confirm: bool = False) -> VerificationView:
        """Show the safety number; with ``confirm``, record that the operators compared it."""
        live = self._line(line)
        # On the record the record keys are bound too (an arbiter compares a station's identity
        # file with its half); off the record no record key is exchanged, so none is bound.
        on = live.state.on_record
        number = safety_number(
            (self._identity.identity_key, self._identity.signing_key, self.recorder.pq_public if on else b""),
            (live.row.peer_identity, live.row.peer_signing, (live.row.peer_pq or b"") if on else b""),
        )
        if confirm and live.row.verified_at is None:
            with self._mutation():
                self._store.update_line(live.line_id, verified_at=self._clock.now())
                live.row = replace(live.row, verified_at=self._clock.now())
        return VerificationView(
            live.row.name,
            live.row.peer_name,
            number,
            grouped(number),
            live.row.verified_at is not None,
            live.row.verified_at,
        )

    def transcript(self, line: str) -> TranscriptView:
        live = self._line(line)
        t = live.state.transcript
        return TranscriptView(
            live.row.name,
            t.head().hex(),
            t.counts[live.state.out_direction],
            t.counts[live.state.in_direction],
        )

    def counters(self) -> dict[str, int]:
        return self._store.counters()

    def identity(self) -> dict[str, str]:
        """This station's self-certifying identity file (proto.identity), for third parties
        verifying an exported record; ``signing_key`` repeats ``ed25519`` for older callers."""
        doc = identity_document(
            self.name,
            self._identity.identity_key,
            self._identity.signing_key,
            self.recorder.pq_public,
            self.sign,
        )
        return {**doc, "signing_key": doc["ed25519"]}

    # ---- the record ------------------------------------------------------------------------

    def sign(self, message: bytes) -> bytes:
        """Sign with this station's Ed25519 identity key (entries, export seals)."""
        return self._identity.sign(message)

    def checkpoint(self, line: str) -> dict[str, Any]:
        """Send a checkpoint now; the peer compares it with its own record and records the outcome."""
        live = self._line(line)
        if not live.established:
            raise LineNotReady(f"line {live.row.name!r} is not established yet")
        seq = self.send_checkpoint(live.line_id)
        return {"line": live.row.name, "seq": seq, "head": live.state.transcript.head().hex()}

    def last_checkpoint_sent(self, line_id: bytes) -> float | None:
        sent = [c["at"] for c in self._store.checkpoints(line_id) if c["status"] == "sent"]
        return max(sent) if sent else None

    def send_checkpoint(self, line_id: bytes) -> int:
        live = self._lines[line_id]
        with self._mutation():
            checkpoint = self.recorder.make_checkpoint(live)
            sealed = self._seal(live, checkpoint)
            self._store.add_outbound(line_id, sealed.seq, "checkpoint", sealed.frame, self._clock.now())
            self._persist(live)
            self.recorder.checkpoint_sent(live, sealed.seq, checkpoint)
        self.sender.enqueue([(line_id, sealed.seq)])
        return sealed.seq

    def export_transcript(self, line: str, withhold: list[str] | None = None) -> dict[str, Any]:
        """The whole record of a line, verifiable elsewhere with the two identity files.

        ``withhold`` lists entries "D:N" (direction, sequence number) whose body to leave out.
        """
        wanted: set[tuple[int, int]] = set()
        for spec in withhold or []:
            d, _, n = str(spec).partition(":")
            if d not in ("0", "1") or not n.isdigit() or int(n) < 2:
                raise InvalidArgument(
                    f"{spec!r} names no entry that can be withheld: give DIRECTION:SEQ, e.g. 1:3 "
                    "(the hello and the welcome, 1:1 and 0:1, are always shown)"
                )
            wanted.add((int(d), int(n)))
        return self.recorder.export(self._line(line), frozenset(wanted))

    def verify_transcript(self, line: str) -> dict[str, Any]:
        """Check the local record: the chain, every signature (on the record), checkpoints.

        The full check runs on the event loop, so its result is kept until the line's head
        moves: a console page viewed again and again does not stall the station.
        """
        live = self._line(line)
        head = live.state.transcript.head().hex()
        cached = self._verified.get(live.line_id)
        if cached is not None and cached[0] == head:
            result = cached[1]
        else:
            doc = self.recorder.export(live)
            result = verify_export(doc, None, require_signatures=live.state.on_record)
            if result.head != head:
                raise RecordInvalid("the stored entries do not lead to the line's current head")
            self._verified[live.line_id] = (head, result)
        checkpoints = self._store.checkpoints(live.line_id)
        received = [c for c in checkpoints if c["status"] != "sent"]
        return {
            "line": live.row.name,
            "on_record": live.state.on_record,
            "entries": list(result.counts),
            "head": result.head,
            "checkpoints_sent": len(checkpoints) - len(received),
            "checkpoints_received": len(received),
            "last_checkpoint": received[-1] if received else None,
            "diverged": [c for c in received if c["status"] == "diverged"],
            "withheld": list(result.withheld),
            "unreadable": list(result.unreadable),
            "contradicted": list(result.contradicted),
        }
