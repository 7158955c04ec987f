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
mailbox again from the oldest unacknowledged frame (``server._catch_up_all``).
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
