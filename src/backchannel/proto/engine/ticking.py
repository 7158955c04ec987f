"""The passage of time on one line: link tests, answers, end-to-end recovery, checkpoints,
and the judgement of its circuits' health.

Called about once a second per established line with the line's core, whose link watch
(:class:`~backchannel.proto.engine.linkcheck.LineWatch`, in memory, rebuilt after a restart)
holds the timers and the circuits' contact times. It decides what to send, which loss to
report, how each circuit and the line stand and whether a gap calls for a new SUBSCRIBE, and
returns the new core (its watch and peer report moved on) with effects; the station's
monitor carries them out (a send event each, an alarm raised or cleared on each change).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from backchannel.clock import ms
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import linkcheck
from backchannel.proto.engine.core import LineCore
from backchannel.proto.engine.linkcheck import KEEP, Health, LineWatch, assess, line_health, put
from backchannel.proto.engine.recovery import RESEND_LIMIT, PeerReport, gap_due
from backchannel.proto.payloads import LinkTest, LinkTestReply


class TickLedger(Protocol):
    def relayed_times(self, line_id: bytes, first: int, last: int) -> list[tuple[int, float | None]]:
        """(seq, when a relay first stored it) of our frames ``first``..``last``, in order."""
        ...

    def last_checkpoint_sent(self, line_id: bytes) -> float | None: ...


@dataclass(frozen=True)
class Timing:
    interval: float  # link_test_interval
    resend_after: float
    checkpoint_interval: float


def tick(core: LineCore, now: float, timing: Timing, ledger: TickLedger) -> tuple[LineCore, list[fx.Effect]]:
    """The core after ``now`` (its watch's timers, a round of recovery in its peer report, the
    circuits' health) and what this line does."""
    line_id, watch = core.line_id, core.watch
    effects: list[fx.Effect] = []
    gap_report = gap_due(watch.gap_since, watch.last_test_at, now, timing.resend_after)
    if now >= watch.next_test_at or gap_report:  # early with a gap: it tells what we lack
        test_id = watch.next_test_id
        watch = replace(
            watch,
            next_test_id=test_id + 1,
            # (replies to tests held behind a gap may never come: the oldest are forgotten)
            tests_sent=put(watch.tests_sent, test_id, now, KEEP),
            next_test_at=now + timing.interval,
            last_test_at=now,
        )
        effects.append(fx.SendPayload(line_id, LinkTest(test_id, ms(now)), "test"))
    peer, resent = resend_lacking(core, watch, now, timing.resend_after, ledger)
    effects += resent
    if peer.loss_proved():
        effects.append(fx.FramesLost(line_id, peer.has + 1, True))
    elif peer.loss_over():  # (after a restart: at the first report, as for health)
        effects.append(fx.FramesLost(line_id, 0, False))
    if watch.next_checkpoint_at == 0.0:  # after a start: one interval after the last one sent
        last = ledger.last_checkpoint_sent(line_id) or now
        watch = replace(watch, next_checkpoint_at=last + timing.checkpoint_interval)
    elif now >= watch.next_checkpoint_at:
        watch = replace(watch, next_checkpoint_at=now + timing.checkpoint_interval)
        effects.append(fx.SendCheckpoint(line_id))
    watch, answers = linkcheck.due_answers(watch, now, timing.interval)
    for test_id, circuits, held in answers:
        reply = LinkTestReply(test_id, circuits, ms(now), ms(held))
        effects.append(fx.SendPayload(line_id, reply, "test-reply"))
    watch, judged = judge(line_id, watch, now, timing.interval)
    return replace(core, peer=peer, watch=watch), effects + judged


def judge(line_id: bytes, watch: LineWatch, now: float, interval: float) -> tuple[LineWatch, list[fx.Effect]]:
    """Each circuit's health and the line's at ``now`` (:func:`~.linkcheck.assess`), as alarm
    effects the shell raises or clears on a change; and a new SUBSCRIBE while a gap is open (at
    half an interval, then at each doubling of its age), before its alarm at one interval."""
    effects: list[fx.Effect] = []
    states: list[Health] = []
    for circuit in watch.circuits:
        judged = assess(circuit, now, interval)
        if judged is None:
            continue  # too early after a start or a new circuit: say nothing yet
        watch = watch.with_circuit(replace(circuit, state=judged))
        states.append(judged)
        if now < circuit.suspended_until:
            continue  # its alarm was raised when it was suspended (``linkcheck.suspend``)
        effects.append(
            fx.CircuitDown(line_id, circuit.url, judged is Health.DOWN, circuit.connected, circuit.last_in)
        )
    if states and len(states) == len(watch.circuits):
        watch = replace(watch, state=line_health(states))
        effects.append(fx.LineDown(line_id, watch.state is Health.DOWN, len(states)))
    if gap_due(watch.gap_since, watch.resubscribed_at, now, interval / 2):
        watch = replace(watch, resubscribed_at=now)
        effects.append(fx.Resubscribe(line_id))
    age = 0.0 if watch.gap_since is None else now - watch.gap_since
    effects.append(fx.GapOpen(line_id, watch.gap_since is not None and age > interval, age))
    return watch, effects


def resend_lacking(
    core: LineCore, watch: LineWatch, now: float, resend_after: float, ledger: TickLedger
) -> tuple[PeerReport, list[fx.Effect]]:
    """Our frames the peer still lacks though a relay stored them, to send again on every
    circuit (``proto.engine.recovery``); and the peer report after that round."""
    report = core.peer
    if report.has + 1 >= core.state.next_seq or (report.resent_at or 0.0) + resend_after > now:
        return report, []  # (the cheap checks first: this runs on every tick)
    relayed = ledger.relayed_times(core.line_id, report.has + 1, report.has + RESEND_LIMIT)
    report, due = report.resend(relayed, now, resend_after, watch.gap_since)
    if not due:
        return report, []
    return report, [fx.Count("resent", len(due)), fx.Resend(core.line_id, tuple(due))]
