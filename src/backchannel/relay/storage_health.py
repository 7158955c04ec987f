"""Storage failures made visible: counted by kind, logged once per episode.

Theory of operation
-------------------
A database that fails usually fails for a while (a restart, a full disk, a hang), and every
request meanwhile fails the same way: logging each would bury the one line that matters. So
an *episode* starts with the first failure after a success: it logs one ERROR line (what
failed and why) and ends with the first success after it: one INFO line (how long it lasted,
how many operations failed). Every failure is counted in ``storage_errors`` and in
``storage_errors_<kind>`` (``StorageError.kind``), so the metrics show each one.

Whoever sees a failure also tells the server (``on_failure``): after a storage error the
relay cannot trust its idea of what is stored and pushed, so every subscription reads its
mailbox again from the oldest unacknowledged frame (``Deliveries.catch_up_all``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from backchannel.clock import Clock
from backchannel.errors import StorageError

_LOG = logging.getLogger("backchannel.relay")

#: The kinds a ``StorageError`` may name; each has a counter ``storage_errors_<kind>``.
KINDS = ("connection", "disk_full", "read_only", "io", "other")


class StorageHealth:
    def __init__(self, clock: Clock, counters: dict[str, int], on_failure: Callable[[], None]) -> None:
        self._clock = clock
        self._counters = counters
        self._on_failure = on_failure
        #: Monotonic start of the current episode (None: the store works).
        self.failing_since: float | None = None
        self._failures = 0
        #: A write failed in this episode: only a write that works ends it (reads may work
        #: on a database that cannot be written: a full disk, a read-only file system).
        self._writes_failing = False

    def failed(self, what: str, exc: StorageError, *, write: bool = False) -> None:
        """One operation failed (``what``: "a batch of 12 writes", "a mailbox read", ...)."""
        self._writes_failing = self._writes_failing or write
        kind = exc.kind if exc.kind in KINDS else "other"
        self._counters["storage_errors"] += 1
        self._counters[f"storage_errors_{kind}"] += 1
        self._failures += 1
        if self.failing_since is None:
            self.failing_since = self._clock.monotonic()
            self._counters["storage_episodes"] += 1
            _LOG.error("relay storage failing (%s): %s failed: %s", kind, what, exc)
        else:
            _LOG.debug("relay storage still failing (%s): %s failed: %s", kind, what, exc)
        self._on_failure()

    def succeeded(self, *, write: bool = False) -> None:
        """An operation worked: the episode, if any, is over (a read ends it only if no
        write failed in it)."""
        if self.failing_since is None or (self._writes_failing and not write):
            return
        lasted = self._clock.monotonic() - self.failing_since
        failures = self._failures
        _LOG.info("relay storage working again after %.1f s (%d failed operations)", lasted, failures)
        self.failing_since = None
        self._failures = 0
        self._writes_failing = False


class StallWatch:
    """A database that hangs (a paused or unreachable server) fails nothing: every call just
    waits, and neither ``failed`` nor any timeout fires. So the relay watches the one database
    thread itself: a call running longer than ``stall_seconds`` logs one ERROR line and counts
    ``storage_stalls``; the first call to finish after it logs one INFO line.

    ``wrap`` is applied to every function the database thread runs; ``check`` is called by the
    relay's own timer (on the event loop), so the watch needs no thread of its own.
    """

    def __init__(self, clock: Clock, counters: dict[str, int], stall_seconds: float) -> None:
        self._clock = clock
        self._counters = counters
        self._stall_seconds = stall_seconds
        #: Monotonic start of the call the database thread is running (None: idle).
        self._running_since: float | None = None
        self._stalled_since: float | None = None

    def wrap(self, fn: Callable[..., object]) -> Callable[..., object]:
        def timed(*args: object) -> object:
            self._running_since = self._clock.monotonic()
            try:
                return fn(*args)
            finally:
                self._running_since = None

        return timed

    def check(self) -> None:
        """Log and count a stall once; log its end once (called every second or so)."""
        started, now = self._running_since, self._clock.monotonic()
        if self._stalled_since is None:
            if started is not None and now - started >= self._stall_seconds:
                self._stalled_since = started
                self._counters["storage_stalls"] += 1
                _LOG.error(
                    "relay storage has not answered for %.0f s (is the database hung or unreachable?)",
                    now - started,
                )
        elif started is None or started != self._stalled_since:
            _LOG.info("relay storage answered again after %.1f s", now - self._stalled_since)
            self._stalled_since = None
