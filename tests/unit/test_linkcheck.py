"""Circuit health and link-test bookkeeping (pure: each event returns a new watch)."""

from __future__ import annotations

import pytest

from backchannel.proto.engine import linkcheck
from backchannel.proto.engine.linkcheck import (
    CircuitHealth,
    Health,
    LineWatch,
    assess,
    disconnect_grace,
    line_health,
    reply_delay,
)

INTERVAL = 10.0  # link-test interval


def circuit(**kw: object) -> CircuitHealth:
    base: dict[str, object] = {"url": "ws://a", "since": 0.0, "connected": True, "connection_changed": 0.0}
    base.update(kw)
    return CircuitHealth(**base)  # type: ignore[arg-type]


def test_contact_both_ways_within_two_intervals_is_up() -> None:
    assert assess(circuit(last_in=95.0, last_out=90.0), now=100.0, interval=INTERVAL) is Health.UP


def test_contact_one_way_only_is_degraded() -> None:
    assert assess(circuit(last_in=95.0, last_out=50.0), now=100.0, interval=INTERVAL) is Health.DEGRADED
    assert assess(circuit(last_in=None, last_out=95.0), now=100.0, interval=INTERVAL) is Health.DEGRADED


def test_no_contact_for_two_intervals_is_down_even_when_connected() -> None:
    assert assess(circuit(last_in=70.0, last_out=70.0), now=100.0, interval=INTERVAL) is Health.DOWN


def test_a_lost_relay_connection_is_down_after_the_grace_period_only() -> None:
    lost = circuit(connected=False, connection_changed=99.0, last_in=99.0, last_out=99.0)
    assert assess(lost, now=99.0 + disconnect_grace(INTERVAL) / 2, interval=INTERVAL) is Health.UP
    assert assess(lost, now=99.0 + disconnect_grace(INTERVAL), interval=INTERVAL) is Health.DOWN


def test_a_new_circuit_is_not_judged_for_two_intervals_unless_it_shows_contact() -> None:
    fresh = circuit(since=95.0)
    assert assess(fresh, now=100.0, interval=INTERVAL) is None  # no word yet: an open alarm stays open
    assert assess(circuit(since=95.0, last_in=99.0), now=100.0, interval=INTERVAL) is Health.UP
    assert assess(fresh, now=95.0 + 2 * INTERVAL + 1, interval=INTERVAL) is Health.DOWN


def rtt(watch: LineWatch, url: str) -> float | None:
    found = watch.circuit(url)
    assert found is not None
    return found.rtt


def test_the_first_copy_of_an_answer_gives_its_circuit_a_round_trip_time() -> None:
    watch = linkcheck.start(0.0, INTERVAL, {"ws://a": True})
    watch = LineWatch(circuits=watch.circuits, tests_sent=((5, 10.0),))
    watch = linkcheck.copy_arrived(watch, "ws://a", 30, now=10.9)  # seen before it is decoded
    watch = linkcheck.reply_received(watch, 5, seq=30, circuits=("ws://a",), held=0.5, now=10.9, url="ws://a")
    assert rtt(watch, "ws://a") == pytest.approx(0.4)


def test_grace_and_reply_delay_are_bounded_for_long_intervals() -> None:
    assert disconnect_grace(3600) == 30.0 and reply_delay(3600) == 2.0
    assert disconnect_grace(1.0) == 0.5 and reply_delay(1.0) == 0.25


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([Health.UP, Health.UP], Health.UP),
        ([Health.UP, Health.DOWN], Health.DEGRADED),
        ([Health.DEGRADED, Health.DOWN], Health.DEGRADED),
        ([Health.DOWN, Health.DOWN], Health.DOWN),
    ],
)
def test_the_line_is_down_only_when_every_circuit_is(states: list[Health], expected: Health) -> None:
    assert line_health(states) is expected


def test_a_test_is_answered_with_every_circuit_that_delivered_a_copy_in_time() -> None:
    watch = linkcheck.test_received(LineWatch(), test_id=7, seq=40, url="ws://a", now=100.0)
    watch = linkcheck.copy_arrived(watch, "ws://b", seq=40, now=100.5)  # the same frame, later, through b
    assert linkcheck.due_answers(watch, now=100.1, interval=INTERVAL) == (watch, [])
    watch, due = linkcheck.due_answers(watch, now=100.0 + reply_delay(INTERVAL), interval=INTERVAL)
    ((test_id, circuits, held),) = due
    assert (test_id, circuits, held) == (7, ("ws://a", "ws://b"), reply_delay(INTERVAL))
    assert linkcheck.due_answers(watch, now=200.0, interval=INTERVAL)[1] == []  # answered once


def test_an_answer_gives_contact_out_and_its_copies_give_round_trip_times_without_the_hold() -> None:
    started = linkcheck.start(0.0, INTERVAL, {"ws://a": True, "ws://b": True})
    watch = LineWatch(circuits=started.circuits, tests_sent=((3, 100.0),))
    watch = linkcheck.reply_received(watch, 3, seq=12, circuits=("ws://a",), held=2.0, now=102.3)
    a, b = watch.circuit("ws://a"), watch.circuit("ws://b")
    assert a is not None and b is not None
    assert a.last_out == 102.3 and b.last_out is None
    watch = linkcheck.copy_arrived(watch, "ws://a", 12, now=102.3)
    watch = linkcheck.copy_arrived(watch, "ws://b", 12, now=102.8)
    assert rtt(watch, "ws://a") == pytest.approx(0.3)
    assert rtt(watch, "ws://b") == pytest.approx(0.8)
    b = watch.circuit("ws://b")
    assert b is not None and b.last_in == 102.8
