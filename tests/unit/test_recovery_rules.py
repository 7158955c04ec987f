"""The pure rules of end-to-end recovery: which frames to send again, and when to report a gap."""

from __future__ import annotations

from backchannel.station.recovery import RESEND_LIMIT, PeerReport, frames_to_resend, gap_test_due


def test_a_report_never_moves_back() -> None:
    report = PeerReport()
    report.report(5, now=10.0)
    report.report(3, now=11.0)  # a late copy of an older entry
    assert (report.has, report.reported_at) == (5, 10.0)
    report.report(5, now=12.0)  # the same count again: still lacking what follows
    assert (report.has, report.reported_at) == (5, 12.0)


def test_nothing_is_resent_before_the_peer_has_reported() -> None:
    assert frames_to_resend(PeerReport(), [(1, 0.0)], now=100.0, resend_after=2.0) == []


def test_a_frame_stored_long_before_the_peer_reported_lacking_it_is_resent() -> None:
    report = PeerReport(has=4, reported_at=10.0)
    relayed = [(5, 7.0), (6, 8.5), (7, None)]
    # 5 was stored 3 s before the report (> 2 s): lost. 6 only 1.5 s before: maybe in flight.
    # 7 was never stored: the ordinary retry is still at it.
    assert frames_to_resend(report, relayed, now=10.5, resend_after=2.0) == [5]


def test_frames_the_peer_already_has_are_never_resent() -> None:
    report = PeerReport(has=6, reported_at=100.0)
    assert frames_to_resend(report, [(5, 1.0), (6, 1.0), (7, 1.0)], now=100.0, resend_after=2.0) == [7]


def test_one_round_per_resend_after() -> None:
    report = PeerReport(has=0, reported_at=10.0, resent_at=9.0)
    assert frames_to_resend(report, [(1, 1.0)], now=10.5, resend_after=2.0) == []
    assert frames_to_resend(report, [(1, 1.0)], now=11.0, resend_after=2.0) == [1]


def test_a_round_is_bounded() -> None:
    report = PeerReport(has=0, reported_at=1000.0)
    relayed = [(seq, 1.0) for seq in range(1, 2 * RESEND_LIMIT)]
    due = frames_to_resend(report, relayed, now=1000.0, resend_after=2.0)
    assert due == list(range(1, RESEND_LIMIT + 1))


def test_a_gap_is_reported_early_once_per_resend_after() -> None:
    assert not gap_test_due(None, None, now=100.0, resend_after=2.0)
    assert not gap_test_due(99.0, None, now=100.0, resend_after=2.0)  # too young
    assert gap_test_due(97.0, None, now=100.0, resend_after=2.0)
    assert not gap_test_due(97.0, 99.5, now=100.0, resend_after=2.0)  # tested just now
    assert gap_test_due(97.0, 98.0, now=100.0, resend_after=2.0)
