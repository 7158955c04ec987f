"""The pure rules of end-to-end recovery: which frames to send again, and when to report a gap."""

from __future__ import annotations

from backchannel.proto.engine.recovery import RESEND_LIMIT, PeerReport, gap_due

R = 2.0  # resend_after


def test_a_report_never_moves_back() -> None:
    report = PeerReport().report(5, now=10.0)
    report = report.report(3, now=11.0)  # a late copy of an older entry
    assert (report.has, report.reported_at) == (5, 10.0)
    report = report.report(5, now=12.0)  # the same count again: still lacking what follows
    assert (report.has, report.reported_at) == (5, 12.0)


def test_an_entry_released_from_the_hold_raises_has_but_dates_no_report() -> None:
    report = PeerReport(has=2, reported_at=10.0).report(4, now=50.0, first_hand=False)
    assert (report.has, report.reported_at) == (4, 10.0)


def test_nothing_is_resent_before_the_peer_has_reported() -> None:
    assert PeerReport().resend([(1, 0.0)], now=100.0, resend_after=R)[1] == []


def test_a_frame_stored_long_before_the_peer_reported_lacking_it_is_resent() -> None:
    report = PeerReport(has=4, reported_at=10.0)
    relayed = [(5, 7.0), (6, 8.5), (7, None)]
    # 5 was stored 3 s before the report (> 2 s): lost. 6 only 1.5 s before: maybe in flight.
    # 7 was never stored: the ordinary retry is still at it.
    report, due = report.resend(relayed, now=10.5, resend_after=R)
    assert due == [5]
    assert report.resent_at == 10.5


def test_frames_the_peer_already_has_are_never_resent() -> None:
    report = PeerReport(has=6, reported_at=100.0)
    assert report.resend([(5, 1.0), (6, 1.0), (7, 1.0)], now=100.0, resend_after=R)[1] == [7]


def test_another_round_needs_a_report_newer_than_the_last_round() -> None:
    report = PeerReport(has=0, reported_at=10.0)
    report, due = report.resend([(1, 1.0)], now=10.0, resend_after=R)
    assert due == [1]
    report, due = report.resend([(1, 1.0)], now=11.0, resend_after=R)
    assert due == []  # too soon
    report, due = report.resend([(1, 1.0)], now=50.0, resend_after=R)
    assert due == []  # the peer said nothing since
    report = report.report(0, now=51.0)  # it still lacks frame 1
    assert report.resend([(1, 1.0)], now=51.0, resend_after=R)[1] == [1]


def test_a_round_is_bounded() -> None:
    report = PeerReport(has=0, reported_at=1000.0)
    relayed = [(seq, 1.0) for seq in range(1, 2 * RESEND_LIMIT)]
    assert report.resend(relayed, now=1000.0, resend_after=R)[1] == list(range(1, RESEND_LIMIT + 1))


def test_our_own_gap_drives_rounds_without_a_report_at_doubling_ages() -> None:
    # Loss both ways: the peer's reports are held behind our gap, which opened at 100.
    report = PeerReport(has=3, reported_at=50.0, resent_at=60.0)
    relayed = [(4, 90.0)]
    rounds = []
    for now in range(100, 130):
        report, due = report.resend(relayed, now, R, gap_since=100.0)
        if due:
            rounds.append(now)
    assert rounds == [102, 104, 108, 116]  # gap ages R, 2R, 4R, 8R


def test_a_gap_is_reported_early_at_doubling_ages() -> None:
    assert not gap_due(None, None, now=100.0, resend_after=R)
    assert not gap_due(99.0, None, now=100.0, resend_after=R)  # too young
    assert gap_due(97.0, None, now=100.0, resend_after=R)
    assert gap_due(97.0, 90.0, now=100.0, resend_after=R)  # the last test was before the gap
    assert not gap_due(97.0, 99.5, now=100.0, resend_after=R)  # tested just now
    assert gap_due(90.0, 94.0, now=98.0, resend_after=R)  # age 4 at the last test: again 4 s later
    assert not gap_due(90.0, 98.0, now=105.0, resend_after=R)  # age 8 at the last: wait 8 s


def test_a_stale_report_does_not_block_a_gap_driven_round() -> None:
    # The peer's last report predates everything it lacks; its newer ones wait behind our gap.
    report = PeerReport(has=3, reported_at=50.0)
    report, due = report.resend([(4, 60.0), (5, 61.0)], now=100.0, resend_after=R, gap_since=90.0)
    assert due == [4, 5]
    assert not report.loss_proved()  # our own gap is no proof that a relay lost anything


def test_a_loss_is_proved_only_by_a_later_report_still_lacking_a_frame_sent_again() -> None:
    report = PeerReport(has=4, reported_at=10.0)
    report, due = report.resend([(5, 1.0), (6, 1.0)], now=10.0, resend_after=R)
    assert due == [5, 6]
    assert not report.loss_proved()  # one report may be stale: the peer was cut off
    report = report.report(4, now=10.3)  # sealed before our copies can have arrived: no proof
    assert not report.loss_proved()
    report = report.report(5, now=11.5)  # well after the round, 6 is still missing
    assert report.loss_proved()
    assert not report.loss_over()
    report = report.report(6, now=12.0)
    assert not report.loss_proved() and report.loss_over()


def test_a_restarted_station_judges_nothing_before_the_first_report() -> None:
    report = PeerReport(has=9)  # from the record
    assert not report.loss_over() and not report.loss_proved()
    assert report.report(9, now=5.0).loss_over()
