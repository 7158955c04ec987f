"""The passage of time on one line: link tests, answers, end-to-end recovery, checkpoints.

Called about once a second per established line with the line's link watch (in memory,
rebuilt after a restart: :class:`~backchannel.proto.engine.linkcheck.LineWatch`). It decides
what to send and which loss to report, updates the watch's timers, and returns effects; the
station's monitor carries them out (a send event each, an alarm each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backchannel.clock import ms
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine.core import LineCore
from backchannel.proto.engine.linkcheck import LineWatch, trim
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


def tick(
    core: LineCore, watch: LineWatch, now: float, timing: Timing, ledger: TickLedger
) -> tuple[LineCore, list[fx.Effect]]:
    """The core after ``now`` (a round of recovery changes its peer report) and what this line
    does; the watch's timers move with it."""
    line_id = core.line_id
    effects: list[fx.Effect] = []
    gap_report = gap_due(watch.gap_since, watch.last_test_at, now, timing.resend_after)
    if now >= watch.next_test_at or gap_report:  # early with a gap: it tells what we lack
        test_id = watch.next_test_id
        watch.next_test_id += 1
        watch.tests_sent[test_id] = now
        trim(watch.tests_sent)  # (replies to tests held behind a gap may never come)
        watch.next_test_at = now + timing.interval
        watch.last_test_at = now
        effects.append(fx.SendPayload(line_id, LinkTest(test_id, ms(now)), "test"))
    peer, resent = resend_lacking(core, watch, now, timing.resend_after, ledger)
    core = core.with_peer(peer)
    effects += resent
    if peer.loss_proved():
        effects.append(fx.FramesLost(line_id, peer.has + 1, True))
    elif peer.loss_over():  # (after a restart: at the first report, as for health)
        effects.append(fx.FramesLost(line_id, 0, False))
    if watch.next_checkpoint_at == 0.0:  # after a start: one interval after the last one sent
        last = ledger.last_checkpoint_sent(line_id) or now
        watch.next_checkpoint_at = last + timing.checkpoint_interval
    elif now >= watch.next_checkpoint_at:
        watch.next_checkpoint_at = now + timing.checkpoint_interval
        effects.append(fx.SendCheckpoint(line_id))
    for test_id, circuits, held in watch.due_answers(now, timing.interval):
        reply = LinkTestReply(test_id, circuits, ms(now), ms(held))
        effects.append(fx.SendPayload(line_id, reply, "test-reply"))
    return core, effects


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
