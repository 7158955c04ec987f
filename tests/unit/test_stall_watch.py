"""The relay's stall watch: a database call that hangs is logged and counted once."""

from __future__ import annotations

import logging
import threading

import pytest

from backchannel.clock import FakeClock
from backchannel.relay.storage_health import StallWatch


def test_a_call_running_past_the_bound_is_one_stall_and_its_end_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, counters = FakeClock(), {"storage_stalls": 0}
    watch = StallWatch(clock, counters, stall_seconds=5.0)
    entered, release = threading.Event(), threading.Event()

    def blocking() -> None:
        entered.set()
        release.wait(10)

    call = watch.wrap(blocking)
    worker = threading.Thread(target=call)
    worker.start()
    assert entered.wait(10)
    with caplog.at_level(logging.INFO, logger="backchannel.relay"):
        clock.advance(4.0)
        watch.check()
        assert counters["storage_stalls"] == 0  # not yet
        for _ in range(3):  # past the bound, checked several times: one stall
            clock.advance(2.0)
            watch.check()
        assert counters["storage_stalls"] == 1
        release.set()
        worker.join(10)
        watch.check()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("has not answered" in m for m in messages) == 1
    assert sum("answered again" in m for m in messages) == 1


def test_quick_calls_are_never_a_stall() -> None:
    clock, counters = FakeClock(), {"storage_stalls": 0}
    watch = StallWatch(clock, counters, stall_seconds=5.0)
    for _ in range(10):
        watch.wrap(lambda: None)()
        clock.advance(10.0)
        watch.check()
    assert counters["storage_stalls"] == 0
