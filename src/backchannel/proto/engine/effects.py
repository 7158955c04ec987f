"""What the line engine asks the shell to do: plain, immutable data.

Two kinds. *Stored* effects change durable state and are applied inside the event's
transaction (a failure rolls all of them back together). *After-commit* effects
(:data:`AFTER_COMMIT`) touch the world outside the database (send frames, alarms) and are
carried out only once the transaction committed, so nothing leaves the station that the disk
does not hold. The rest are applied in order as they come: to the store, to the in-memory
health watch (which later copies in the same batch must see), and to the waiters (which
keep what they learn until the commit, see ``station.delivery.Waiters``).
"""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.proto.invitation import MailboxCapability
from backchannel.proto.payloads import Checkpoint, Circuits, LinkTest, LinkTestReply, Payload
from backchannel.proto.record import Seen

# ---- stored (inside the transaction) ----------------------------------------------------------


@dataclass(frozen=True)
class StoreEntry:
    """Record one transcript entry with the chain hash after it."""

    line_id: bytes
    direction: int
    seq: int
    chain_hash: bytes
    raw: bytes


@dataclass(frozen=True)
class StoreOutbound:
    """Keep a sealed frame of ours to send (and resend) with the very same bytes."""

    line_id: bytes
    seq: int
    kind: str
    frame: bytes


@dataclass(frozen=True)
class StoreInbound:
    """Keep a received message (the operator reads it from the inbox)."""

    line_id: bytes
    seq: int
    precedence: str
    text: str
    sent_at: float


@dataclass(frozen=True)
class HoldFrame:
    """Keep a frame that arrived ahead of a gap until the gap fills."""

    line_id: bytes
    seq: int
    data: bytes


@dataclass(frozen=True)
class ReleaseHeld:
    """A held frame was delivered: forget it."""

    line_id: bytes
    seq: int


@dataclass(frozen=True)
class MarkDelivered:
    """The peer's *delivered* receipt: our frames up to ``upto`` are stored there."""

    line_id: bytes
    upto: int


@dataclass(frozen=True)
class MarkAcknowledged:
    """The peer's *acknowledged* receipt: an operator there read our message ``seq``."""

    line_id: bytes
    seq: int
    operator: str


@dataclass(frozen=True)
class Count:
    """A statistic (a dropped frame by reason, ...)."""

    name: str
    n: int = 1


@dataclass(frozen=True)
class SaveLine:
    """Write the line's core and session to its row; ``established`` on a welcome."""

    line_id: bytes
    established: bool = False


@dataclass(frozen=True)
class ReceiptDue:
    """A message was stored: seal a cumulative *delivered* receipt at the end of the batch."""

    line_id: bytes


@dataclass(frozen=True)
class ApplyCircuits:
    """The peer changed the line's circuits (judged by the relay policy in the shell)."""

    line_id: bytes
    change: Circuits


@dataclass(frozen=True)
class CheckpointArrived:
    """The peer's checkpoint: compare it with our record (in the shell's recorder)."""

    line_id: bytes
    seq: int
    checkpoint: Checkpoint


@dataclass(frozen=True)
class CheckSeen:
    """The peer's entry ``seq`` says what it had of our direction; compare with our record."""

    line_id: bytes
    seq: int
    seen: Seen


# ---- pairing and circuit changes (``proto.engine.pairing``, ``proto.engine.circuits``) ---------


@dataclass(frozen=True)
class SpendInvitation:
    """Our invitation was used by a genuine hello: no second party may use it."""

    line_id: bytes


@dataclass(frozen=True)
class PairingFailed:
    """The accepter's welcome did not come within ``timeout`` seconds: the line is *failed*
    (stored), and its operator must be told why it may be (an alarm, after the commit)."""

    line_id: bytes
    timeout: float


@dataclass(frozen=True)
class InvitationReused:
    """A second hello tried to use our invitation, already used: alarm its operator (the
    invitation text leaked or was given twice). ``circuit``: the relay it came through."""

    line_id: bytes
    circuit: str | None


@dataclass(frozen=True)
class AcceptCircuit:
    """Send to the peer's mailbox ``cap`` from now on (stored now, used after the commit);
    with ``answer``, offer our own mailbox on that relay after the commit."""

    line_id: bytes
    cap: MailboxCapability
    answer: bool


@dataclass(frozen=True)
class HoldProposal:
    """Keep the peer's proposed circuit for a local operator's approval, and raise its alarm."""

    line_id: bytes
    cap: MailboxCapability


@dataclass(frozen=True)
class DeclineCircuit:
    """Tell the peer we will not use ``url`` (a removal of a circuit we never had, §9.2)."""

    line_id: bytes
    url: str
    why: str


@dataclass(frozen=True)
class WithdrawProposal:
    """The peer withdrew a proposal still held for approval: forget it, clear its alarm."""

    line_id: bytes
    url: str


@dataclass(frozen=True)
class RetireCircuit:
    """The peer declined our proposal: our mailbox on ``url`` is retired (read a while)."""

    line_id: bytes
    url: str


@dataclass(frozen=True)
class DropCircuit:
    """The peer removed the circuit through ``url``: stop sending there, forget our mailbox."""

    line_id: bytes
    url: str


@dataclass(frozen=True)
class CircuitsChanged:
    """After the commit: the health watch follows the line's new set of circuits."""

    line_id: bytes


# ---- in memory, at once (health is not durable; later copies in a batch must see it) ---------


@dataclass(frozen=True)
class CopyArrived:
    """An authenticated copy of frame ``seq`` came through ``circuit`` (first or not): the
    circuit carries traffic from the peer to us."""

    line_id: bytes
    seq: int
    circuit: str | None


@dataclass(frozen=True)
class LinkTestArrived:
    line_id: bytes
    seq: int
    test: LinkTest
    circuit: str | None


@dataclass(frozen=True)
class LinkReplyArrived:
    line_id: bytes
    seq: int
    reply: LinkTestReply
    circuit: str | None


# ---- after the commit ----------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFrames:
    """Send these stored frames on every circuit of the line."""

    line_id: bytes
    seqs: tuple[int, ...]


@dataclass(frozen=True)
class WakeIncoming:
    line_id: bytes
    seq: int


@dataclass(frozen=True)
class WakeDelivered:
    line_id: bytes
    upto: int


@dataclass(frozen=True)
class WakeAcknowledged:
    line_id: bytes
    seq: int


@dataclass(frozen=True)
class GapChanged:
    """Frames are held ahead of a gap (``open``), or the gap has closed."""

    line_id: bytes
    open: bool


@dataclass(frozen=True)
class Unreadable:
    """Entry ``seq`` passed the line key but could not be read: its place is spent."""

    line_id: bytes
    direction: int
    seq: int
    code: str


@dataclass(frozen=True)
class ClearDeadline:
    """Our message ``seq`` was acknowledged: its deadline alarm is over."""

    line_id: bytes
    seq: int


# ---- from the tick -------------------------------------------------------------------------


@dataclass(frozen=True)
class SendPayload:
    """Seal, store and send one control payload of ours (a send event of its own)."""

    line_id: bytes
    payload: Payload
    kind: str


@dataclass(frozen=True)
class SendCheckpoint:
    """Seal, store and send a checkpoint of the line's record (the recorder builds it)."""

    line_id: bytes


@dataclass(frozen=True)
class Resend:
    """Send these stored frames again on every circuit: the peer still lacks them."""

    line_id: bytes
    seqs: tuple[int, ...]


@dataclass(frozen=True)
class FramesLost:
    """The peer proved a relay loses frames (``active``), from our entry ``first`` on; or it
    no longer lacks any (not ``active``)."""

    line_id: bytes
    first: int
    active: bool


@dataclass(frozen=True)
class CircuitDown:
    """Circuit ``url`` of the line is judged down (``down``) or not at this tick; or it is no
    longer a circuit of the line (not ``down``). The shell raises or clears its alarm when that
    changed since it last said; ``connected`` and ``last_in`` are for the operator's text."""

    line_id: bytes
    url: str
    down: bool
    connected: bool = False
    last_in: float | None = None


@dataclass(frozen=True)
class LineDown:
    """Every one of the line's ``circuits`` circuits is down (``down``), or not."""

    line_id: bytes
    down: bool
    circuits: int


@dataclass(frozen=True)
class GapOpen:
    """A gap has been open longer than a link-test interval (``open``), or not; ``age`` in s."""

    line_id: bytes
    open: bool
    age: float


@dataclass(frozen=True)
class Resubscribe:
    """A gap is open: SUBSCRIBE again on every circuit so relays push what they still hold."""

    line_id: bytes


Effect = (
    StoreEntry
    | StoreOutbound
    | StoreInbound
    | HoldFrame
    | ReleaseHeld
    | MarkDelivered
    | MarkAcknowledged
    | Count
    | SaveLine
    | ReceiptDue
    | ApplyCircuits
    | SpendInvitation
    | PairingFailed
    | InvitationReused
    | AcceptCircuit
    | HoldProposal
    | DeclineCircuit
    | WithdrawProposal
    | RetireCircuit
    | DropCircuit
    | CircuitsChanged
    | CheckpointArrived
    | CheckSeen
    | CopyArrived
    | LinkTestArrived
    | LinkReplyArrived
    | QueueFrames
    | WakeIncoming
    | WakeDelivered
    | WakeAcknowledged
    | GapChanged
    | Unreadable
    | ClearDeadline
    | SendPayload
    | SendCheckpoint
    | Resend
    | FramesLost
    | CircuitDown
    | LineDown
    | GapOpen
    | Resubscribe
)

#: Effects carried out only after the event's transaction committed.
AFTER_COMMIT = (QueueFrames, GapChanged, Unreadable, ClearDeadline)
