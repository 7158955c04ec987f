"""Live updates: tell every open console page when something it may show has changed.

Theory of operation
-------------------
While at least one page listens (``GET /events``, server-sent events), one task takes a
digest of the station's visible state every ``interval`` seconds: the lines with their
circuits, the latest messages with their receipt status, and the alarms. When the digest
differs from the last one, every listener is woken once. The page then fetches itself again
and swaps in the parts marked ``data-live``; nothing is pushed but the word "changed", so
no page can be shown anything its session may not read.

Polling the station (on its own event loop, a few milliseconds per tick) keeps the station
free of console hooks, and catches every kind of change, whatever caused it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable

from backchannel.aio import TaskSet

log = logging.getLogger("backchannel.console")


class ChangeFeed:
    def __init__(self, snapshot: Callable[[], object], interval: float = 0.5) -> None:
        self._snapshot = snapshot
        self._interval = interval
        self._changed = asyncio.Event()
        self._listeners = 0
        self._tasks = TaskSet("console feed")
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.version = 0

    def digest(self) -> bytes:
        state = json.dumps(self._snapshot(), sort_keys=True, default=str).encode("utf-8")
        return hashlib.sha256(state).digest()

    async def changes(self, keepalive: float = 15.0) -> AsyncIterator[bool]:
        """Yield True after each change, False after ``keepalive`` seconds of quiet."""
        self._listeners += 1
        if (self._task is None or self._task.done()) and not self._closed:
            self._task = self._tasks.spawn(self._watch(), "console-feed")
        try:
            while not self._closed:
                event = self._changed
                try:
                    await asyncio.wait_for(event.wait(), keepalive)
                except TimeoutError:
                    yield False
                    continue
                if self._closed:
                    return
                yield True
        finally:
            self._listeners -= 1

    async def _watch(self) -> None:
        last: bytes | None = None
        while self._listeners > 0 and not self._closed:
            try:
                digest: bytes | None = self.digest()
            except Exception:  # a broken snapshot must not end live updates for good
                log.exception("console: cannot read the station state")
                digest = last
            if last is not None and digest != last:
                self._wake()
            last = digest
            await asyncio.sleep(self._interval)

    def _wake(self) -> None:
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def close(self) -> None:
        """End every listener's stream (the console is shutting down)."""
        self._closed = True
        self._wake()
        await self._tasks.close()
