"""End-to-end recovery's state lives in the immutable line core: the receive event updates what
the peer reported, the tick's round returns a new core, and no call changes its input."""

from __future__ import annotations

from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import ticking
from backchannel.proto.engine.linkcheck import LineWatch
from backchannel.proto.engine.recovery import PeerReport

from support.engine_sim import message, pair


class Ledger:
    def relayed_times(self, line_id: bytes, first: int, last: int) -> list[tuple[int, float | None]]:
        return [(2, 1.0)]  # our frame 2, stored by a relay at 1.0

    def last_checkpoint_sent(self, line_id: bytes) -> float | None:
        return None


def test_a_received_entry_updates_the_peer_report_of_the_core() -> None:
    _, accepter, welcome = pair(b"seed")
    before = accepter.core
    accepter.receive(welcome[0])
    assert (accepter.core.peer.has, accepter.core.peer.reported_at) == (1, 0.0)  # it had our hello
    assert before.peer == PeerReport()  # the old core is untouched


def test_a_round_of_recovery_comes_back_in_the_core_the_tick_returns() -> None:
    _, accepter, welcome = pair(b"seed")
    accepter.receive(welcome[0])
    accepter.send(message("lost on the way"), "msg")  # our frame 2
    core = accepter.core.with_peer(PeerReport(has=1, reported_at=10.0))  # the peer still lacks 2
    core = core.with_watch(LineWatch(next_test_at=1e9, next_checkpoint_at=1e9))  # (no circuits to judge)
    after, effects = ticking.tick(core, 10.0, ticking.Timing(60.0, 2.0, 3600.0), Ledger())
    effects = [e for e in effects if not isinstance(e, fx.GapOpen)]  # (no gap: its alarm stays clear)
    assert effects == [fx.Count("resent", 1), fx.Resend(core.line_id, (2,))]
    assert (after.peer.resent_at, after.peer.round_upto) == (10.0, 2)
    assert core.peer.resent_at is None
    again, effects = ticking.tick(after, 10.5, ticking.Timing(60.0, 2.0, 3600.0), Ledger())
    assert effects == [fx.GapOpen(core.line_id, False, 0.0)]  # one round per resend_after
    assert again.peer == after.peer
