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

The protocol's decisions live in the pure line engine (:mod:`backchannel.proto.engine`); the
station is its shell. The station's parts, one concept each, are wired here to the narrow
ports they need and never see this facade (an import-linter contract says so): the ports
:mod:`lines` (the in-memory lines and the account), :mod:`links` (relays, mailboxes,
circuits), :mod:`outbox` (the send event, the group commit); the parts :mod:`pairing`
(invite, accept, the hello), :mod:`receiver` (the receive shell), :mod:`delivery` (the sender
and waiters), :mod:`monitor` (link tests, health, recovery, alarms), :mod:`recorder` (the
record), :mod:`circuits` (in-band circuit changes), :mod:`release` (the two-person rule),
:mod:`reading` (views), :mod:`store` (all SQL), :mod:`keystore`. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from backchannel.clock import Clock, Rng, SystemClock, SystemRng
from backchannel.errors import (
    BackchannelError,
    InvalidArgument,
    LineNotReady,
    MessageTooLarge,
    RecordInvalid,
    StationAlreadyInitialised,
    StationNotInitialised,
    TransportError,
    UnknownMessage,
)
from backchannel.proto.export import VerifiedExport, verify_export
from backchannel.proto.identity import identity_document
from backchannel.proto.invitation import valid_name
from backchannel.proto.payloads import MAX_TEXT_BYTES, Acknowledged, Payload, Precedence
from backchannel.proto.primitives import MLDSA_SEED_LEN, require_mlkem
from backchannel.proto.safety import grouped, safety_number
from backchannel.proto.session import Identity
from backchannel.station.alarm_sinks import AlarmDispatcher, sinks_from_config
from backchannel.station.alarms import Alarms, AlarmView
from backchannel.station.circuits import RETIRED_READ_SECONDS, CircuitChanges
from backchannel.station.config import StationConfig
from backchannel.station.keystore import AtRest, check_new_passphrase, create_keystore, open_keystore
from backchannel.station.lines import Lines
from backchannel.station.links import FLOOD_WINDOW, Links
from backchannel.station.monitor import Monitor
from backchannel.station.outbox import Outbox
from backchannel.station.pairing import Pairing
from backchannel.station.private import secure_home
from backchannel.station.reading import Views
from backchannel.station.receiver import RECEIVE_BATCH, Receiver
from backchannel.station.recorder import Recorder
from backchannel.station.relay_link import Delivery
from backchannel.station.release import Releases
from backchannel.station.store import Store
from backchannel.station.views import (
    DraftView,
    InvitationView,
    LineView,
    MessageView,
    TranscriptView,
    VerificationView,
)

__all__ = ["CONFIG", "DATABASE", "FLOOD_WINDOW", "KEYSTORE", "RECEIVE_BATCH", "Station"]

log = logging.getLogger("backchannel.station")

KEYSTORE = "keystore.bcks"
DATABASE = "station.db"
CONFIG = "station.toml"
STATUS_LEVELS = ("queued", "relayed", "delivered", "acknowledged")


def ms(seconds: float) -> int:
    return int(seconds * 1000)


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
        self.store = store
        self._atrest = atrest
        self._clock = clock
        self._started = False
        self._receiving: asyncio.Task[None] | None = None
        self._verified: dict[bytes, tuple[str, VerifiedExport]] = {}
        self.dispatcher: AlarmDispatcher | None = None
        # The ports, then the parts wired to the ports they need (never to this facade).
        self._lines = self.mirror = lines = Lines(store, atrest, identity, clock, rng)
        self.links = links = Links(config, store, clock, rng)
        self.sending = outbox = Outbox(lines, links, store, clock, config)
        self.waiters, self.sender = outbox.waiters, outbox.sender
        self.alarms = alarms = Alarms(store, name, clock, rng, lines.name, self._dispatch_alarm)
        self.recorder = recorder = Recorder(name, lines, outbox, alarms, store, atrest, clock, config)
        self.monitor = monitor = Monitor(
            lines,
            links,
            outbox,
            alarms,
            store,
            config,
            lambda line_id: recorder.peer_seen(lines[line_id]) if line_id in lines else 0,
            recorder.send_checkpoint,
            recorder.last_checkpoint_sent,
        )
        self.views = views = Views(lines, links, monitor, store)
        self.pairing = pairing = Pairing(name, lines, links, outbox, recorder, views, store, config)
        self.circuits = circuits = CircuitChanges(lines, links, outbox, monitor, alarms, views, store, config)
        self.receiver = Receiver(lines, links, outbox, monitor, recorder, circuits, pairing, store, clock)
        self.releases = Releases(lines, outbox, views, store)
        links.on_link_state += [self.sender.on_link_state, monitor.on_link_state]
        links.on_flooded.append(monitor.relay_flooded)

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
        with self.store.transaction():
            self.store.prune_retired(self._clock.now() - RETIRED_READ_SECONDS)
        for _, url, recv_id, recv_sealed in self.store.mailboxes() + self.store.mailboxes(retired=True):
            self.links.subscribe(url, recv_id, self._atrest.open(recv_sealed, b"recv-key" + recv_id))
        for line_id, url, send_id, send_sealed in self.store.peer_mailboxes():
            seed = self._atrest.open(send_sealed, b"send-key" + send_id)
            self.links.add_sender(line_id, url, send_id, seed)
        self._receiving = asyncio.create_task(self.receiver.run(), name="receive")
        await self.sender.start(self.store.unsent())
        await self.monitor.start()

    async def close(self) -> None:
        """Stop all tasks and close connections and the database. Nothing durable is lost."""
        await self.monitor.stop()
        await self.sender.stop()
        if self._receiving:
            self._receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiving
        await self.links.close()
        self.waiters.fail_all(TransportError("the station is shutting down"))
        if self.dispatcher is not None:
            await self.dispatcher.close(5.0)
        self.store.close()

    def links_open(self) -> int:
        return self.links.links_open()

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
        live = self._lines.find(line)
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
        seq, waiter = await self.sending.queue_message(live, prec, text, wait)
        if waiter is not None:
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                raise TransportError(
                    f"the message is queued as {live.row.name}:{seq} but was not {wait} "
                    f"within {timeout:g} s; it will keep trying"
                ) from None
        return self.views.message(live.row.name, seq, "out")

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

    async def ack(self, line: str, seq: int, operator: str) -> MessageView:
        """Record that ``operator`` read received message ``seq``; tell the sender, signed by Olm."""
        live = self._lines.find(line)
        if not valid_name(operator):
            raise InvalidArgument("an operator name of 1 to 64 bytes of printable text is required")
        row = self.store.inbound_one(live.line_id, seq)
        if row is None:
            raise UnknownMessage(f"no received message {seq} on line {live.row.name!r}")
        if row.acked_at is None:
            now = self._clock.now()
            with self._lines.mutation():
                self.store.ack_inbound(live.line_id, seq, operator, now)
                ack_seq = self.sending.store_payload(live, Acknowledged(seq, operator, ms(now)), "ack")
            self.sending.enqueue([(live.line_id, ack_seq)])
        return self.views.message(live.row.name, seq, "in")

    def send_payload(self, line_id: bytes, payload: Payload, kind: str, enqueue: bool = True) -> int:
        """Seal a control payload (receipt, link test, ...), store it, then queue it to send."""
        return self.sending.send_payload(line_id, payload, kind, enqueue)

    def outbound_frame(self, line_id: bytes, seq: int) -> bytes:
        return self.sending.outbound_frame(line_id, seq)

    def receive_batch(self, batch: list[Delivery]) -> list[tuple[bytes, int]]:
        """Process frames from relays in one transaction; returns new frames to send."""
        return self.receiver.receive_batch(batch)

    # ---- alarms ----------------------------------------------------------------------------

    def _dispatch_alarm(self, event: dict[str, object]) -> None:
        log.warning("alarm %s: %s", event["state"], event["message"])
        if self.dispatcher is not None:
            self.dispatcher.dispatch(event)

    def _alarm_delivery_result(self, event: dict[str, object], sink: str, ok: bool, detail: str) -> None:
        if not ok:
            log.error("alarm %s could not be delivered to %s: %s", event.get("id"), sink, detail)
            with contextlib.suppress(BackchannelError), self.store.transaction(durable=False):
                self.store.count("alarm_delivery_failed")

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

    # ---- reading (see reading.py) -----------------------------------------------------------

    def lines(self) -> list[LineView]:
        return self.views.lines()

    def line(self, name: str) -> LineView:
        return self.views.line_view(self._lines.find(name))

    def live_line(self, line_id: bytes) -> Any:
        """The running line (its row, protocol state and Olm session), for tests and tools."""
        return self._lines[line_id]

    def pending_invitations(self) -> list[dict[str, object]]:
        return [
            {"line_id": lid.hex(), "name": name, "created_at": at}
            for lid, name, at in self.store.pending_invitations()
        ]

    def inbox(
        self, line: str | None = None, unacknowledged: bool = False, limit: int = 100
    ) -> list[MessageView]:
        return self.views.inbox(line, unacknowledged, limit)

    def outbox(self, line: str | None = None, limit: int = 100) -> list[MessageView]:
        return self.views.outbox(line, limit)

    def message(self, line: str, seq: int, direction: str) -> MessageView:
        return self.views.message(line, seq, direction)

    def find_line_id(self, name: str) -> bytes | None:
        return self._lines.find_id(name)

    def peer_name(self, line_id: bytes) -> str:
        return self._lines.peer_name(line_id)

    def out_direction(self, line_id: bytes) -> int:
        return self._lines[line_id].state.out_direction

    def verify(self, line: str, confirm: bool = False) -> VerificationView:
        """Show the safety number; with ``confirm``, record that the operators compared it."""
        live = self._lines.find(line)
        # On the record the record keys are bound too (an arbiter compares a station's identity
        # file with its half); off the record no record key is exchanged, so none is bound.
        on = live.state.on_record
        number = safety_number(
            (
                self._lines.identity.identity_key,
                self._lines.identity.signing_key,
                self.recorder.pq_public if on else b"",
            ),
            (live.row.peer_identity, live.row.peer_signing, (live.row.peer_pq or b"") if on else b""),
        )
        if confirm and live.row.verified_at is None:
            with self._lines.mutation():
                self.store.update_line(live.line_id, verified_at=self._clock.now())
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
        live = self._lines.find(line)
        t = live.state.transcript
        return TranscriptView(
            live.row.name,
            t.head().hex(),
            t.counts[live.state.out_direction],
            t.counts[live.state.in_direction],
        )

    def counters(self) -> dict[str, int]:
        return self.store.counters()

    def identity(self) -> dict[str, str]:
        """This station's self-certifying identity file (proto.identity), for third parties
        verifying an exported record; ``signing_key`` repeats ``ed25519`` for older callers."""
        ident = self._lines.identity
        doc = identity_document(
            self.name, ident.identity_key, ident.signing_key, self.recorder.pq_public, self.sign
        )
        return {**doc, "signing_key": doc["ed25519"]}

    # ---- the record ------------------------------------------------------------------------

    def sign(self, message: bytes) -> bytes:
        """Sign with this station's Ed25519 identity key (entries, export seals)."""
        return self._lines.identity.sign(message)

    def checkpoint(self, line: str) -> dict[str, Any]:
        """Send a checkpoint now; the peer compares it with its own record and records the outcome."""
        live = self._lines.find(line)
        if not live.established:
            raise LineNotReady(f"line {live.row.name!r} is not established yet")
        seq = self.recorder.send_checkpoint(live.line_id)
        return {"line": live.row.name, "seq": seq, "head": live.state.transcript.head().hex()}

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
        return self.recorder.export(self._lines.find(line), frozenset(wanted))

    def verify_transcript(self, line: str) -> dict[str, Any]:
        """Check the local record: the chain, every signature (on the record), checkpoints.

        The full check runs on the event loop, so its result is kept until the line's head
        moves: a console page viewed again and again does not stall the station.
        """
        live = self._lines.find(line)
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
        checkpoints = self.store.checkpoints(live.line_id)
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
