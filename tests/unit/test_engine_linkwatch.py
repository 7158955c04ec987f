"""The link watch is a value of the line's core: each event and each tick returns a new watch
and effects (send a test, answer one, raise or clear an alarm, SUBSCRIBE again); nothing is
changed in place and nothing here does I/O."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import pytest

from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import linkcheck, ticking
from backchannel.proto.engine.core import LineCore
from backchannel.proto.engine.linkcheck import Health, LineWatch, reply_delay
from backchannel.proto.payloads import LinkTest, LinkTestReply

from support.engine_sim import pair

E = TypeVar("E")
INTERVAL = 10.0
TIMING = ticking.Timing(INTERVAL, 2.0, 3600.0)


class Ledger:
    def relayed_times(self, line_id: bytes, first: int, last: int) -> list[tuple[int, float | None]]:
        return []

    def last_checkpoint_sent(self, line_id: bytes) -> float | None:
        return None


def core_with(watch: LineWatch) -> LineCore:
    inviter, _, _ = pair(b"watch")
    return inviter.core.with_watch(watch)


def of(kind: type[E], effects: list[fx.Effect]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def test_the_watch_is_frozen_and_an_event_leaves_its_input_alone() -> None:
    watch = linkcheck.start(100.0, INTERVAL, {"ws://a": True})
    with pytest.raises(dataclasses.FrozenInstanceError):
        watch.next_test_at = 0.0  # type: ignore[misc]
    after = linkcheck.copy_arrived(watch, "ws://a", 3, now=101.0)
    a_before, a_after = watch.circuit("ws://a"), after.circuit("ws://a")
    assert a_before is not None and a_after is not None
    assert (a_before.last_in, a_after.last_in) == (None, 101.0)


def test_a_tick_sends_a_due_link_test_and_returns_its_timers_in_the_core() -> None:
    core = core_with(linkcheck.start(100.0, INTERVAL, {"ws://a": True}))
    first_id = core.watch.next_test_id
    after, effects = ticking.tick(core, 101.0, TIMING, Ledger())
    assert of(fx.SendPayload, effects) == [fx.SendPayload(core.line_id, LinkTest(first_id, 101_000), "test")]
    assert after.watch.tests_sent == ((first_id, 101.0),) and after.watch.next_test_at == 101.0 + INTERVAL
    assert after.watch.next_checkpoint_at == 101.0 + TIMING.checkpoint_interval  # (none sent yet)
    assert core.watch.tests_sent == ()  # the core it was given is untouched
    again, effects = ticking.tick(after, 102.0, TIMING, Ledger())
    assert of(fx.SendPayload, effects) == [] and again.watch.next_test_id == first_id + 1


def test_a_tick_answers_the_peers_test_once_with_every_circuit_that_brought_a_copy() -> None:
    watch = linkcheck.start(100.0, INTERVAL, {"ws://a": True, "ws://b": True})
    watch = dataclasses.replace(watch, next_test_at=1e9)
    watch = linkcheck.test_received(watch, test_id=9, seq=5, url="ws://b", now=100.0)
    watch = linkcheck.copy_arrived(watch, "ws://a", 5, now=100.2)
    now = 100.0 + reply_delay(INTERVAL)
    after, effects = ticking.tick(core_with(watch), now, TIMING, Ledger())
    reply = LinkTestReply(9, ("ws://a", "ws://b"), 102_000, 2_000)  # (held 2 s: the most)
    assert of(fx.SendPayload, effects) == [fx.SendPayload(after.line_id, reply, "test-reply")]
    _, effects = ticking.tick(after, now + 1, TIMING, Ledger())
    assert of(fx.SendPayload, effects) == []


def test_silent_circuits_raise_their_alarms_and_the_line_is_down_when_all_are() -> None:
    watch = linkcheck.start(0.0, INTERVAL, {"ws://a": True, "ws://b": True})
    watch = dataclasses.replace(watch, next_test_at=1e9)
    watch = linkcheck.copy_arrived(watch, "ws://a", 1, now=0.5)
    core, effects = ticking.tick(core_with(watch), 1.0, TIMING, Ledger())
    # Just started: a with contact is up; b has said nothing yet, so nothing is said of it.
    assert of(fx.CircuitDown, effects) == [fx.CircuitDown(core.line_id, "ws://a", False, True, 0.5)]
    assert of(fx.LineDown, effects) == []  # (not every circuit judged yet)
    later = 0.5 + 2 * INTERVAL + 1
    core, effects = ticking.tick(core, later, TIMING, Ledger())
    assert [(e.url, e.down) for e in of(fx.CircuitDown, effects)] == [("ws://a", True), ("ws://b", True)]
    assert of(fx.LineDown, effects) == [fx.LineDown(core.line_id, True, 2)]
    assert core.watch.state is Health.DOWN
    assert [c.state for c in core.watch.circuits] == [Health.DOWN, Health.DOWN]


def test_a_lost_relay_connection_counts_from_when_it_changed() -> None:
    watch = linkcheck.start(0.0, INTERVAL, {"ws://a": True})
    lost = linkcheck.link_state(watch, "ws://a", False, now=5.0)
    assert linkcheck.link_state(lost, "ws://a", False, now=9.0) == lost  # no change, no new time
    circuit = lost.circuit("ws://a")
    assert circuit is not None and (circuit.connected, circuit.connection_changed) == (False, 5.0)
    assert linkcheck.link_state(watch, "ws://x", False, now=5.0) == watch  # not a circuit of ours


def test_a_suspended_circuit_is_down_without_a_second_alarm() -> None:
    watch = linkcheck.start(0.0, INTERVAL, {"ws://a": True})
    watch = linkcheck.suspend(dataclasses.replace(watch, next_test_at=1e9), "ws://a", until=50.0)
    core, effects = ticking.tick(core_with(watch), 1.0, TIMING, Ledger())
    assert of(fx.CircuitDown, effects) == []  # (the shell raised it when it suspended the relay)
    assert of(fx.LineDown, effects) == [fx.LineDown(core.line_id, True, 1)]
    assert linkcheck.suspend(watch, "ws://x", until=50.0) == watch


def test_an_open_gap_subscribes_again_at_half_an_interval_then_at_each_doubling_and_alarms_after_one() -> (
    None
):
    watch = dataclasses.replace(LineWatch(), next_test_at=1e9, next_checkpoint_at=1e9)
    watch = linkcheck.gap(watch, True, now=100.0)
    assert linkcheck.gap(watch, True, now=104.0).gap_since == 100.0  # its age counts from the first
    core = core_with(watch)
    seen: list[tuple[float, bool, bool]] = []
    for now in (102.0, 105.0, 106.0, 110.0, 111.0, 121.0):
        core, effects = ticking.tick(core, now, TIMING, Ledger())
        (gap,) = of(fx.GapOpen, effects)
        seen.append((now, bool(of(fx.Resubscribe, effects)), gap.open))
    assert seen == [
        (102.0, False, False),
        (105.0, True, False),  # half an interval
        (106.0, False, False),
        (110.0, True, False),  # twice that age
        (111.0, False, True),  # open longer than an interval: the alarm
        (121.0, True, True),
    ]
    closed, effects = ticking.tick(
        core.with_watch(linkcheck.gap(core.watch, False, 122.0)), 122.0, TIMING, Ledger()
    )
    assert (
        of(fx.GapOpen, effects) == [fx.GapOpen(core.line_id, False, 0.0)] and closed.watch.gap_since is None
    )


def test_following_the_lines_circuits_clears_the_alarm_of_a_removed_one() -> None:
    watch = linkcheck.start(0.0, INTERVAL, {"ws://a": True, "ws://b": True})
    after, effects = linkcheck.follow_circuits(watch, b"L", {"ws://b": False, "ws://c": True}, now=7.0)
    assert effects == [fx.CircuitDown(b"L", "ws://a", False)]
    assert after.urls == ("ws://b", "ws://c")
    b, c = after.circuit("ws://b"), after.circuit("ws://c")
    assert b is not None and c is not None
    assert (b.connected, b.since) == (False, 0.0) and (c.connected, c.since) == (True, 7.0)


def test_remembered_test_numbers_are_bounded() -> None:
    watch = LineWatch()
    for seq in range(200):
        watch = linkcheck.test_received(watch, test_id=seq, seq=seq, url="ws://a", now=float(seq))
    assert len(watch.test_seqs) == linkcheck.KEEP and watch.test_seqs[0] == (
        200 - linkcheck.KEEP,
        200 - linkcheck.KEEP,
    )
