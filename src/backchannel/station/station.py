"""The station: one party's end of its lines. The facade the CLI, the console and programs use.

Theory of operation
-------------------
The protocol's decisions live in the pure line engine (:mod:`backchannel.proto.engine`); the
station is its shell: one transaction per event (a send, a batch of received frames, a tick),
the engine's effects applied to the store and the in-memory mirror of the lines, the commit,
then the I/O (send, wake waiters, alarms). A crash anywhere replays safely; a failed
transaction reloads the mirror from disk, so memory never runs ahead of the disk.

This facade only wires the parts to the narrow ports they need (:mod:`lines`, :mod:`links`,
:mod:`outbox`) and exposes the operator's commands; the parts never see it (an import-linter
contract says so). The path of a message and the map of the rooms: docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backchannel.aio import TaskSet
from backchannel.clock import Clock, Rng, SystemClock, SystemRng
from backchannel.errors import InvalidArgument, TransportError, UnknownMessage
from backchannel.proto.invitation import valid_name
from backchannel.proto.payloads import Payload, Precedence
from backchannel.proto.session import Identity
from backchannel.station.alarms import AlarmOutlet, Alarms, AlarmView
from backchannel.station.circuits import RETIRED_READ_SECONDS, CircuitChanges
from backchannel.station.config import StationConfig
from backchannel.station.home import CONFIG, DATABASE, KEYSTORE, init_home, open_home
from backchannel.station.keystore import AtRest
from backchannel.station.lines import Lines
from backchannel.station.links import FLOOD_WINDOW, Links
from backchannel.station.monitor import Monitor
from backchannel.station.outbox import Outbox
from backchannel.station.pairing import Pairing
from backchannel.station.reading import Views
from backchannel.station.receiver import RECEIVE_BATCH, Receiver
from backchannel.station.recorder import Recorder
from backchannel.station.relay_link import Delivery
from backchannel.station.release import Releases
from backchannel.station.sends import Sends
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


class Station:
    """One station. Create with :meth:`init` once, then :meth:`open`, ``await start()``.

    All methods are meant to be called from the event loop thread that called :meth:`start`.
    Read methods (``lines``, ``inbox``, ``status``, ``verify``) also work before ``start``.
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
        #: The station's own tasks (the receive loop), ended by close().
        self._tasks = TaskSet("station")
        self.outlet = AlarmOutlet(store)
        # The ports, then the parts wired to the ports they need (never to this facade).
        self._lines = self.mirror = lines = Lines(store, atrest, identity, clock, rng)
        self.links = links = Links(config, store, clock, rng)
        self.sending = outbox = Outbox(lines, links, store, clock, config)
        self.waiters, self.sender, self.pacer = outbox.waiters, outbox.sender, outbox.pacer
        self.alarms = alarms = Alarms(store, name, clock, rng, lines.name, self.outlet.dispatch)
        self.recorder = recorder = Recorder(name, lines, outbox, alarms, store, atrest, clock, config)
        self.monitor = monitor = Monitor(lines, links, outbox, alarms, recorder, store, config)
        self.views = views = Views(lines, links, store)
        self.pairing = pairing = Pairing(name, lines, links, outbox, recorder, views, store, config, alarms)
        self.circuits = circuits = CircuitChanges(lines, links, outbox, monitor, alarms, views, store, config)
        self.receiver = Receiver(lines, links, outbox, monitor, recorder, circuits, pairing, store, clock)
        self.receiver.on_seen.append(circuits.rotations.peer_seen)  # (a rotation applied by the peer)
        self.releases = releases = Releases(lines, outbox, views, store)
        self.sends = Sends(lines, outbox, releases, views, store, lambda: self.config)
        links.on_link_state += [self.sender.on_link_state, monitor.on_link_state]
        links.on_flooded.append(monitor.relay_flooded)
        links.on_refused.append(monitor.relay_refused)
        monitor.on_tick.append(pairing.expire)
        self.pacer.attach(monitor, views)  # cover traffic (§10.7): the tick, the peer's contact, status

    # ---- lifecycle -----------------------------------------------------------------------

    @classmethod
    def init(cls, home: Path, name: str, passphrase: str) -> None:
        """Create a new station in ``home``: keystore, database and identity."""
        init_home(home, name, passphrase)

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
        rng = rng or SystemRng()
        o = open_home(home, passphrase, rng)
        config = config or StationConfig.load(home / CONFIG)
        return cls(home, o.store, o.atrest, o.identity, o.name, config, clock or SystemClock(), rng)

    async def start(self) -> None:
        """Connect to every relay the lines use and start sending and receiving."""
        if self._started:
            return
        self._started = True
        self.outlet.start(self.config)
        with self.store.transaction():
            self.store.prune_retired(self._clock.now() - RETIRED_READ_SECONDS)
        self.links.open_mailboxes(self._atrest)
        self._tasks.spawn(self.receiver.run(), "receive")
        await self.sender.start(self.store.unsent())
        await self.monitor.start()

    async def close(self) -> None:
        """Stop all tasks and close connections and the database. Nothing durable is lost."""
        await self.monitor.stop()
        await self.sender.stop()
        await self.pacer.stop()
        await self.circuits.close()
        await self._tasks.close()
        await self.links.close()
        self.waiters.fail_all(TransportError("the station is shutting down"))
        await self.outlet.close()
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
        idempotency_key: str | None = None,
    ) -> MessageView | DraftView:
        """Queue a message durably and start sending it on every circuit of the line.

        Returns once the message is stored (status *queued*), or, with ``wait`` set to
        ``relayed``, ``delivered`` or ``acknowledged``, once it reached that status. On a
        line under the two-person rule the message is held instead (a :class:`DraftView`,
        *awaiting release*) until another operator releases it with :meth:`release`. With an
        ``idempotency_key``, a retry of the same send returns the original message instead of
        sending a second (see ``sends.py``).
        """
        return await self.sends.send(line, text, precedence, wait, timeout, operator, idempotency_key)

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
        if row.acked_at is not None:  # recorded once; the sender was told then, not again now
            return self.views.message(live.row.name, seq, "in").marked_already_acknowledged()
        self.sending.acknowledge(live, seq, operator)
        self.alarms.clear_alarm("flash_received", live.line_id, f"in/{seq}")  # (alarm_on_flash)
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

    def pending_invitations(self) -> list[dict[str, object]]:
        return self.views.pending_invitations()

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
        return self.views.verify(self._lines.find(line), confirm, self.recorder.pq_public)

    def transcript(self, line: str) -> TranscriptView:
        return self.views.transcript(self._lines.find(line))

    def counters(self) -> dict[str, int]:
        return self.store.counters()

    def identity(self) -> dict[str, str]:
        """This station's identity file (proto.identity), for third parties verifying a record."""
        return self.recorder.identity_file()

    # ---- the record ------------------------------------------------------------------------

    def sign(self, message: bytes) -> bytes:
        """Sign with this station's Ed25519 identity key (entries, export seals)."""
        return self._lines.identity.sign(message)

    def checkpoint(self, line: str) -> dict[str, Any]:
        """Send a checkpoint now; the peer compares it with its own record and records the outcome."""
        return self.recorder.checkpoint(self._lines.find(line))

    def export_transcript(self, line: str, withhold: list[str] | None = None) -> dict[str, Any]:
        """The whole record of a line, verifiable elsewhere with the two identity files.

        ``withhold`` lists entries "D:N" (direction, sequence number) whose body to leave out.
        """
        return self.recorder.export_withholding(self._lines.find(line), withhold)

    def verify_transcript(self, line: str) -> dict[str, Any]:
        """Check the local record: the chain, every signature (on the record), checkpoints."""
        return self.recorder.verify(self._lines.find(line))
