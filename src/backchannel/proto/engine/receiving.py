"""Receiving: one frame from a relay in, the new core and what to do out.

Theory of operation
-------------------
The envelope is authenticated first with the line key (no Olm involved: a forged or replayed
frame burns nothing), then classified by sequence number (:mod:`backchannel.proto.ordering`):
a duplicate is dropped, an early frame is held (bounded by :data:`MAX_HELD`), the next one is
decrypted, and every held frame it unblocks follows in order. Each decrypted entry becomes
effects: record it, store the message and owe a *delivered* receipt, apply the peer's receipts,
hand link tests, circuit changes and checkpoints to the parts that judge them. The caller
applies the effects inside one transaction, so a crash anywhere replays safely.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from backchannel.errors import DecryptError, InvitationAlreadyUsed, RemoteError
from backchannel.proto import envelope
from backchannel.proto import line as proto_line
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import pairing
from backchannel.proto.engine.core import LineCore
from backchannel.proto.engine.ledger import Ledger
from backchannel.proto.envelope import Kind, Sealed
from backchannel.proto.ordering import Verdict, classify
from backchannel.proto.payloads import (
    Acknowledged,
    Checkpoint,
    Circuits,
    Delivered,
    Hello,
    LinkTest,
    LinkTestReply,
    Message,
    Welcome,
)
from backchannel.proto.session import OlmSession

#: Frames held ahead of a gap per line, at most (on disk). Later ones are dropped and counted
#: (``held_limit``); the peer sends them again end to end once it learns we lack them.
MAX_HELD = 10_000


@dataclass(frozen=True)
class Received:
    core: LineCore
    effects: list[fx.Effect]
    verdict: Verdict


class _Held(Container[int]):
    """``seq in held`` for the ordering rule, answered by the ledger."""

    def __init__(self, ledger: Ledger, line_id: bytes) -> None:
        self._ledger, self._line_id = ledger, line_id

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self._ledger.is_held(self._line_id, seq)


def receive(
    core: LineCore,
    session: OlmSession,
    sealed: Sealed,
    data: bytes,
    circuit: str | None,
    now: float,
    ledger: Ledger,
    peer_signing: bytes | None,
) -> Received:
    """Take one frame of this line (``data`` parsed as ``sealed``) that came through ``circuit``.

    Raises a ``RemoteError`` for a frame that is not genuine; the core is then unchanged.
    """
    try:
        inner = proto_line.authenticate(core.state, sealed)
    except DecryptError:
        if sealed.header.kind is Kind.HELLO:
            raise InvitationAlreadyUsed("a second party tried to accept an invitation already used") from None
        raise
    line_id, seq = core.line_id, sealed.header.seq
    effects: list[fx.Effect] = [fx.CopyArrived(line_id, seq, circuit)]
    verdict = classify(seq, core.state.delivered_upto, _Held(ledger, line_id))
    if verdict is Verdict.DUPLICATE:
        return Received(core, [*effects, fx.Count("duplicate")], verdict)
    if verdict is Verdict.TOO_FAR:
        return Received(core, [*effects, fx.Count("too_far_ahead")], verdict)
    if verdict is Verdict.HOLD:
        if ledger.held_count(line_id) >= MAX_HELD:
            # Bounded: the peer resends what we lack once the gap is filled (§10.6).
            return Received(core, [*effects, fx.Count("held_limit")], verdict)
        return Received(
            core, [*effects, fx.HoldFrame(line_id, seq, data), fx.GapChanged(line_id, True)], verdict
        )
    core = deliver(core, session, seq, inner, circuit, now, peer_signing, effects)
    released = 0
    while (held := ledger.held(line_id, core.state.delivered_upto + 1)) is not None:
        effects.append(fx.ReleaseHeld(line_id, core.state.delivered_upto + 1))
        released += 1
        try:  # (authenticated before it was held: this cannot fail short of a corrupt disk)
            next_sealed = envelope.parse(held)
            inner = proto_line.authenticate(core.state, next_sealed)
        except RemoteError:
            effects.append(fx.Count("held_invalid"))  # the peer resends it end to end
            break
        core = deliver(core, session, next_sealed.header.seq, inner, None, now, peer_signing, effects)
    if ledger.held_count(line_id) - released <= 0:
        effects.append(fx.GapChanged(line_id, False))
    effects.append(fx.SaveLine(line_id))
    return Received(core, effects, verdict)


def deliver(
    core: LineCore,
    session: OlmSession,
    seq: int,
    inner: bytes,
    circuit: str | None,
    now: float,
    peer_signing: bytes | None,
    effects: list[fx.Effect],
) -> LineCore:
    """Decrypt the next in-order entry and append what it means to ``effects``."""
    state, opened = proto_line.decrypt_next(core.state, session, seq, inner, peer_signing)
    core = core.with_state(state)
    line_id = core.line_id
    direction = state.in_direction
    effects.append(fx.StoreEntry(line_id, direction, seq, state.transcript.heads[direction], opened.raw))
    if opened.seen is not None:
        effects.append(fx.CheckSeen(line_id, seq, opened.seen))
        count = min(opened.seen.count, state.next_seq - 1)  # never more than we sent
        # End-to-end recovery's evidence (an entry released from the hold is not first-hand).
        core = core.with_peer(core.peer.report(count, now, first_hand=circuit is not None))
    if opened.error is not None:
        # Authenticated by the line key, yet unreadable: the frame is spent (the line moves
        # on, and the transcripts now differ, which is how the operators will see it).
        effects.append(fx.Count("unreadable_" + opened.error.code))
        effects.append(fx.Unreadable(line_id, direction, seq, opened.error.code))
    payload = opened.payload
    if isinstance(payload, Message):
        effects += [
            fx.StoreInbound(line_id, seq, payload.precedence.value, payload.text, payload.sent_at / 1000),
            fx.ReceiptDue(line_id),
            fx.WakeIncoming(line_id, seq),
        ]
    elif isinstance(payload, Delivered):
        effects += [fx.MarkDelivered(line_id, payload.upto), fx.WakeDelivered(line_id, payload.upto)]
    elif isinstance(payload, Acknowledged):
        effects += [
            fx.MarkAcknowledged(line_id, payload.seq, payload.operator),
            fx.WakeAcknowledged(line_id, payload.seq),
            fx.ClearDeadline(line_id, payload.seq),
        ]
    elif isinstance(payload, LinkTest):
        effects.append(fx.LinkTestArrived(line_id, seq, payload, circuit))
    elif isinstance(payload, LinkTestReply):
        effects.append(fx.LinkReplyArrived(line_id, seq, payload, circuit))
    elif isinstance(payload, Circuits):
        effects.append(fx.ApplyCircuits(line_id, payload))
    elif isinstance(payload, Checkpoint):
        effects.append(fx.CheckpointArrived(line_id, seq, payload))
    elif isinstance(payload, Welcome):
        core, welcome = pairing.welcomed(core)
        effects += welcome
    elif isinstance(payload, Hello):
        effects.append(fx.Count("unexpected_hello"))
    return core
