"""A simulated station shell around the pure line engine, for the engine's state-machine test.

It does what ``station/receiver.py`` and ``station/outbox.py`` do, with a dict for a disk:
one transaction per event (a copy of the disk, the engine's stored effects applied to it,
then swapped in), the post-commit effects after that (frames handed to the simulated relay).
A crash throws the in-memory core and Olm session away and rebuilds them from the disk,
which is exactly "restart = rebuild the core from what the effects stored".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from backchannel.clock import FakeRng
from backchannel.proto import envelope
from backchannel.proto import line as proto_line
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import pairing, receiving, sending
from backchannel.proto.engine.core import Lifecycle, LineCore
from backchannel.proto.invitation import Invitation, MailboxCapability, encode_invitation
from backchannel.proto.line import PendingInvitation
from backchannel.proto.payloads import Delivered, Message, Payload, Precedence
from backchannel.proto.primitives import mlkem_public, x25519_public
from backchannel.proto.session import Identity, OlmSession

PICKLE_KEY = b"k" * 32
RELAY = "ws://relay.invalid:1"


@dataclass
class Disk:
    """What one simulated station has durably stored: only what the effects said to store."""

    core: LineCore
    session: str  # the Olm session, pickled
    held: dict[int, bytes] = field(default_factory=dict)
    outbox: dict[int, bytes] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    inbox: dict[int, str] = field(default_factory=dict)
    peer_has: int = 0  # the peer's latest *delivered* receipt
    entries: dict[tuple[int, int], bytes] = field(default_factory=dict)


class DiskLedger:
    def __init__(self, disk: Disk) -> None:
        self.disk = disk

    def is_held(self, line_id: bytes, seq: int) -> bool:
        return seq in self.disk.held

    def held(self, line_id: bytes, seq: int) -> bytes | None:
        return self.disk.held.get(seq)

    def held_count(self, line_id: bytes) -> int:
        return len(self.disk.held)


class Violation(AssertionError):
    """The shell saw an effect that breaks a guarantee (a message stored twice, ...)."""


class SimStation:
    def __init__(self, name: str, core: LineCore, session: OlmSession, rng: FakeRng) -> None:
        self.name = name
        self.rng = rng
        self.disk = Disk(core, session.pickle(PICKLE_KEY))
        self.restart()

    # ---- memory and disk --------------------------------------------------------------------

    def restart(self) -> None:
        """A crash: whatever memory held is gone; the core comes back from the disk."""
        self.core = self.disk.core
        self.session = OlmSession.from_pickle(self.disk.session, PICKLE_KEY)

    def _apply_stored(self, disk: Disk, effect: fx.Effect, receipts: set[bytes]) -> None:
        match effect:
            case fx.StoreEntry(_, direction, seq, chain_hash, _):
                if disk.entries.get((direction, seq), chain_hash) != chain_hash:
                    raise Violation(f"{self.name}: entry {direction}:{seq} stored with two chain hashes")
                disk.entries[(direction, seq)] = chain_hash
            case fx.StoreOutbound(_, seq, kind, frame):
                disk.outbox[seq], disk.kinds[seq] = frame, kind
            case fx.StoreInbound(_, seq, _, text, _):
                if seq in disk.inbox:
                    raise Violation(f"{self.name}: message {seq} stored twice")
                disk.inbox[seq] = text
            case fx.HoldFrame(_, seq, data):
                disk.held[seq] = data
            case fx.ReleaseHeld(_, seq):
                disk.held.pop(seq, None)
            case fx.MarkDelivered(_, upto):
                disk.peer_has = max(disk.peer_has, upto)
            case fx.SaveLine():
                disk.core = self.core
                disk.session = self.session.pickle(PICKLE_KEY)
            case fx.ReceiptDue():
                receipts.add(effect.line_id)
            case fx.CheckSeen(_, seq, seen):
                ours = self.core.state.out_direction
                if seen.count and disk.entries.get((ours, seen.count)) != seen.head:
                    raise Violation(f"{self.name}: entry {seq} saw a different chain of ours")
            case fx.Unreadable():
                raise Violation(f"{self.name}: a genuine frame was unreadable: {effect}")
            case _:
                pass  # statistics, health, waiters, alarms: nothing durable

    def _event(self, effects: list[fx.Effect], disk: Disk, receipts: set[bytes]) -> list[int]:
        """Apply an event's stored effects to ``disk`` (a copy); returns the seqs to send."""
        queue: list[int] = []
        for effect in effects:
            if isinstance(effect, fx.QueueFrames):
                queue += effect.seqs
            else:
                self._apply_stored(disk, effect, receipts)
        return queue

    def sendable(self, seqs: list[int]) -> list[bytes]:
        return [self.disk.outbox[s] for s in seqs if self.core.may_send(s)]

    # ---- events ---------------------------------------------------------------------------

    def send(self, payload: Payload, kind: str, crash: str = "") -> list[bytes]:
        """One send event; returns the frames handed to the relay after the commit."""
        disk = copy.deepcopy(self.disk)
        state, effects, _ = sending.send(self.core.state, self.session, payload, kind, self.rng, None)
        self.core = self.core.with_state(state)
        queue = self._event(effects, disk, set())
        if crash == "before_commit":
            self.restart()
            return []
        self.disk = disk
        if crash == "after_commit":
            self.restart()
            return []
        return self.sendable(queue)

    def receive(self, frame: bytes, crash: str = "") -> tuple[bool, list[bytes]]:
        """One receive event; returns (committed, so the relay may delete it; frames to send)."""
        disk = copy.deepcopy(self.disk)
        sealed = envelope.parse(frame)
        result = receiving.receive(self.core, self.session, sealed, frame, RELAY, 0.0, DiskLedger(disk), None)
        self.core = result.core
        receipts: set[bytes] = set()
        queue = self._event(result.effects, disk, receipts)
        if receipts:  # the batch's cumulative receipt, sealed in the same transaction
            state, effects, _ = sending.send(
                self.core.state,
                self.session,
                Delivered(self.core.state.delivered_upto, 0),
                "delivered",
                self.rng,
                None,
            )
            self.core = self.core.with_state(state)
            queue += self._event(effects, disk, set())
        if crash == "before_commit":
            self.restart()
            return False, []
        self.disk = disk
        if crash == "after_commit":
            self.restart()
            return True, []
        return True, self.sendable(queue)

    def unconfirmed(self) -> list[bytes]:
        """What the sender and end-to-end recovery send again: stored frames the peer has not
        confirmed (its *delivered* receipt counts only messages; control frames go again too)."""
        return self.sendable(sorted(s for s in self.disk.outbox if s > self.disk.peer_has))


def pair(seed: bytes) -> tuple[SimStation, SimStation, list[bytes]]:
    """Pair two simulated stations (the hello opened directly); returns the inviter, the accepter
    and the inviter's welcome on its way."""
    rng = FakeRng(seed)
    inviter_id, accepter_id = Identity.generate(), Identity.generate()
    pairing_secret, kem_seed = rng.bytes(32), rng.bytes(64)
    invitation = Invitation(
        line_id=rng.bytes(16),
        name="alpha",
        identity_key=inviter_id.identity_key,
        signing_key=inviter_id.signing_key,
        one_time_key=inviter_id.new_one_time_key(),
        pairing_key=x25519_public(pairing_secret),
        kem_key=mlkem_public(kem_seed),
        mailboxes=(MailboxCapability(RELAY, rng.bytes(16), rng.bytes(32)),),
        created_at=0,
        expires_at=3_600_000,
        on_record=False,
    )
    signed = encode_invitation(invitation, inviter_id.sign(invitation.signed_message()))
    caps = (MailboxCapability(RELAY, rng.bytes(16), rng.bytes(32)),)
    accepted = proto_line.accept(accepter_id, signed, "bravo", caps, rng)
    pending = PendingInvitation(signed, pairing_secret, kem_seed)
    opened = proto_line.open_hello(inviter_id, pending, envelope.parse(accepted.hello.frame))
    # The inviter's side of the pairing as the engine decides it: established, the invitation
    # spent, the accepter's circuit on our relay kept, and the welcome owed.
    core, opening = pairing.hello_opened(opened.state, opened.hello.mailboxes, {RELAY})
    if fx.SpendInvitation(core.line_id) not in opening:
        raise Violation("an opened hello did not spend its invitation")
    (owed,) = [effect for effect in opening if isinstance(effect, fx.SendPayload)]
    inviter = SimStation("inviter", core, opened.session, rng)
    accepter = SimStation("accepter", LineCore(accepted.state, Lifecycle.PAIRING), accepted.session, rng)
    accepter.disk.outbox[1], accepter.disk.kinds[1] = accepted.hello.frame, "hello"
    for side, state in ((inviter, opened.state), (accepter, accepted.state)):
        side.disk.entries[(1, 1)] = state.transcript.heads[1]  # the hello, recorded at pairing
    welcome = inviter.send(owed.payload, owed.kind)
    return inviter, accepter, welcome


def message(text: str) -> Message:
    return Message(Precedence.ROUTINE, text, 0)
