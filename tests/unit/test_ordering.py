"""Receive-side ordering: duplicates dropped, early frames held, the next one delivered."""

from __future__ import annotations

import pytest

from backchannel.proto.ordering import MAX_AHEAD, Verdict, classify


@pytest.mark.parametrize("delivered_upto", [0, 1, 41, 10**9])
def test_the_next_sequence_number_is_delivered(delivered_upto: int) -> None:
    assert classify(delivered_upto + 1, delivered_upto, set()) is Verdict.DELIVER


@pytest.mark.parametrize("seq", [1, 5, 9, 10])
def test_anything_already_delivered_is_a_duplicate(seq: int) -> None:
    assert classify(seq, 10, set()) is Verdict.DUPLICATE


def test_a_frame_already_held_is_a_duplicate() -> None:
    assert classify(15, 10, {15}) is Verdict.DUPLICATE
    assert classify(16, 10, {15}) is Verdict.HOLD


def test_an_early_frame_is_held() -> None:
    assert classify(12, 10, set()) is Verdict.HOLD


def test_a_frame_exactly_max_ahead_is_still_held() -> None:
    assert classify(10 + MAX_AHEAD, 10, set()) is Verdict.HOLD


def test_a_frame_beyond_max_ahead_is_too_far() -> None:
    assert classify(10 + MAX_AHEAD + 1, 10, set()) is Verdict.TOO_FAR
    assert classify(2**64 - 1, 0, set()) is Verdict.TOO_FAR


def test_held_may_be_any_container() -> None:
    class Evens:
        def __contains__(self, seq: object) -> bool:
            return isinstance(seq, int) and seq % 2 == 0

    assert classify(4, 2, Evens()) is Verdict.DUPLICATE
    assert classify(5, 2, Evens()) is Verdict.HOLD


def test_every_small_case_gets_exactly_the_expected_verdict() -> None:
    held = {7, 9}
    for delivered in range(0, 8):
        for seq in range(1, 14):
            verdict = classify(seq, delivered, held)
            if seq <= delivered or seq in held:
                assert verdict is Verdict.DUPLICATE
            elif seq == delivered + 1:
                assert verdict is Verdict.DELIVER
            else:
                assert verdict is Verdict.HOLD


def test_feeding_a_shuffled_stream_through_the_rule_delivers_each_frame_once_in_order() -> None:
    arrivals = [3, 1, 3, 2, 6, 5, 1, 4, 6, 7, 2, 8]
    delivered_upto, held, out = 0, set[int](), list[int]()
    for seq in arrivals:
        verdict = classify(seq, delivered_upto, held)
        if verdict is Verdict.HOLD:
            held.add(seq)
        elif verdict is Verdict.DELIVER:
            out.append(seq)
            delivered_upto = seq
            while delivered_upto + 1 in held:
                held.remove(delivered_upto + 1)
                delivered_upto += 1
                out.append(delivered_upto)
    assert out == list(range(1, 9))
    assert held == set()
