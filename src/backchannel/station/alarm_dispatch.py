"""Queueing of station alarm events to the configured sinks, in order, each sink on its own.

Theory of operation
-------------------
A raise and its later clear are two separate events. :meth:`AlarmDispatcher.dispatch` never
blocks and never fails because a sink is down: it snapshots the event (so later changes to the
caller's dict cannot alter what is sent) and appends it to one *lane* per sink. Each lane is a
task that delivers its events strictly in order, retrying a failed delivery with exponential
backoff (doubling, capped) up to ``max_attempts`` times before giving up on that event and
moving on to the next. Lanes are independent, so a dead webhook never delays the command sink,
and vice versa.

Every (event, sink) pair gets exactly one final outcome through ``on_result``: delivered,
given up after the last attempt, dropped because too many events were already waiting for
that sink, or not delivered because the dispatcher was shut down. The station records these
outcomes, so an operator can see that an alarm was raised but nobody outside heard it.

Delivery is at-least-once: a webhook that stored the event but whose answer was lost gets it
again. Receivers deduplicate on ``id`` plus ``state`` if they care. :meth:`AlarmDispatcher.close`
is bounded, so alarm delivery can never keep a station from stopping.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from backchannel.aio import TaskSet
from backchannel.errors import ConfigError
from backchannel.station.alarm_sinks import (
    Alarm,
    AlarmSinkError,
    ResultCallback,
    Sink,
    describe,
    retry_delays,
    snapshot,
)

log = logging.getLogger("backchannel.alarms")


@dataclass(eq=False)
class _Lane:
    """One sink's ordered queue and the task that works through it."""

    sink: Sink
    pending: deque[Alarm] = field(default_factory=deque)
    current: Alarm | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class AlarmDispatcher:
    """Queue alarm events to every sink, retry each sink on its own, report every final outcome.

    ``max_pending`` bounds what waits per sink: a sink that stays dead through an alarm storm
    would otherwise hold an ever-growing queue, each event costing the whole retry schedule.
    The oldest waiting event is dropped (and reported) first, since the newest say the most
    about the line's current state.
    """

    def __init__(
        self,
        sinks: Iterable[Sink],
        *,
        max_attempts: int = 8,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
        on_result: ResultCallback | None = None,
        max_pending: int = 1000,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError("alarm delivery needs at least one attempt")
        if first_backoff < 0 or max_backoff < 0:
            raise ConfigError("alarm retry pauses cannot be negative")
        if max_pending < 1:
            raise ConfigError("alarm delivery must let at least one event wait per sink")
        self._lanes = [_Lane(sink) for sink in sinks]
        self._max_attempts = max_attempts
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._on_result = on_result
        self._max_pending = max_pending
        self._closing = False
        self._tasks = TaskSet("alarm dispatcher")

    @property
    def sinks(self) -> list[Sink]:
        return [lane.sink for lane in self._lanes]

    def dispatch(self, alarm: Alarm) -> None:
        """Queue one event for every sink and return at once. Call it from the event loop.

        Raises ``InvalidArgument`` only when the event itself cannot be serialised; a sink's
        trouble is never the caller's: it ends in ``on_result``.
        """
        event = snapshot(alarm)
        for lane in self._lanes:
            if self._closing:
                self._report(event, lane.sink.name, False, "not delivered: alarm delivery is shutting down")
                continue
            if len(lane.pending) >= self._max_pending:
                dropped = lane.pending.popleft()
                self._report(
                    dropped,
                    lane.sink.name,
                    False,
                    f"dropped: {self._max_pending} newer events were waiting for this sink",
                )
            lane.pending.append(event)
            if lane.task is None:
                # (close() waits for the lanes, then cancels them, and logs a failed one)
                lane.task = self._tasks.spawn(self._run(lane), f"alarm lane {lane.sink.name}", report=False)
            lane.wake.set()

    async def close(self, timeout: float = 5.0) -> None:
        """Let queued events go out for up to ``timeout`` seconds, then cancel what is left.

        Whatever was not delivered by then is reported through ``on_result`` as not delivered,
        so the station's record stays complete. Bounded: a sink that ignores cancellation is
        abandoned after one more second rather than holding up the station's shutdown.
        """
        self._closing = True
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        for lane in self._lanes:
            lane.wake.set()
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=timeout)
            for task in unfinished:
                task.cancel()
            if unfinished:
                _, stuck = await asyncio.wait(unfinished, timeout=1.0)
                for task in stuck:
                    log.error("alarm delivery (%s) ignored cancellation; abandoned", task.get_name())
        for lane in self._lanes:
            if lane.task is not None and lane.task.done() and not lane.task.cancelled():
                exc = lane.task.exception()
                if exc is not None:  # a bug in this module; do not lose it
                    log.error("alarm lane %s failed", lane.sink.name, exc_info=exc)
            left = ([lane.current] if lane.current is not None else []) + list(lane.pending)
            lane.current = None
            lane.pending.clear()
            for event in left:
                self._report(event, lane.sink.name, False, "not delivered: alarm delivery was shut down")

    async def _run(self, lane: _Lane) -> None:
        while True:
            while not lane.pending:
                if self._closing:
                    return
                lane.wake.clear()
                await lane.wake.wait()
            event = lane.pending.popleft()
            lane.current = event
            ok, detail = await self._deliver(lane.sink, event)
            lane.current = None
            self._report(event, lane.sink.name, ok, detail)

    async def _deliver(self, sink: Sink, event: Alarm) -> tuple[bool, str]:
        """Try one event at one sink until it gets through or the attempts run out."""
        delays = retry_delays(self._first_backoff, self._max_backoff, self._max_attempts)
        last = ""
        for attempt in range(1, self._max_attempts + 1):
            try:
                await sink.deliver(event)
            except Exception as exc:  # any sink failure is retried; cancellation is not caught
                last = describe(exc)
                if not isinstance(exc, AlarmSinkError):
                    log.warning("alarm sink %s raised unexpectedly", sink.name, exc_info=exc)
                if attempt == self._max_attempts:
                    break
                delay = delays[attempt - 1]
                log.warning(
                    "alarm %s to %s failed (attempt %d of %d), retrying in %g s: %s",
                    event.get("id"),
                    sink.name,
                    attempt,
                    self._max_attempts,
                    delay,
                    last,
                )
                await asyncio.sleep(delay)
            else:
                return True, "delivered" if attempt == 1 else f"delivered at attempt {attempt}"
        return False, f"gave up after {self._max_attempts} attempts: {last}"

    def _report(self, event: Alarm, sink_name: str, ok: bool, detail: str) -> None:
        log.log(
            logging.INFO if ok else logging.ERROR,
            "alarm %s (%s %s) to %s: %s",
            event.get("id"),
            event.get("kind"),
            event.get("state"),
            sink_name,
            detail,
        )
        if self._on_result is None:
            return
        try:
            self._on_result(event, sink_name, ok, detail)
        except Exception:  # the station's recorder failing must not stop the lane
            log.exception("recording the outcome of alarm %s failed", event.get("id"))
