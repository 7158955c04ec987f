"""Group commit: many SENDs and ACKs, one transaction, one fsync.

Theory of operation
-------------------
Handlers never touch the store for writes. They :meth:`GroupCommitter.submit` an operation
with a callback and return at once, so a connection keeps reading while its earlier
requests wait for the disk. One task drains everything submitted so far into a batch, runs
the batch in the store's worker thread (``MailboxStore.apply``: one transaction), and after
the commit calls each callback with its result, in submission order. While a commit runs,
new work piles up and becomes the next batch: under load a batch holds hundreds of frames,
and throughput grows far beyond one fsync per frame. A failed batch calls every callback
with ``None`` (the handler answers INTERNAL), and the committer carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from backchannel.clock import Clock
from backchannel.errors import StorageError
from backchannel.relay.mailbox import QueueLimits
from backchannel.relay.storage.base import DeleteMessage, MailboxStore, WriteOp, WriteResult

_LOG = logging.getLogger("backchannel.relay")

#: An upper bound on one transaction, so a flood cannot build a multi-second commit.
MAX_BATCH = 4096
#: How long deletions alone may wait for company. A deletion need not be durable before its
#: OK (a frame deleted late is at worst delivered again, and stations drop copies), so it
#: rides along with the next SEND's commit instead of making a SEND wait behind its fsync.
ACK_DELAY = 0.01

Done = Callable[[WriteResult | None], None]


class GroupCommitter:
    """Batches submitted writes into transactions run on the store's executor."""

    def __init__(
        self,
        store: MailboxStore,
        executor: Executor,
        limits: QueueLimits,
        clock: Clock,
        counters: dict[str, int],
    ) -> None:
        self._store = store
        self._executor = executor
        self._limits = limits
        self._clock = clock
        self._counters = counters
        self._queue: deque[tuple[WriteOp, Done]] = deque()
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, op: WriteOp, done: Done) -> None:
        """Queue ``op``; ``done`` is called (on the event loop) after its batch commits."""
        self._queue.append((op, done))
        self._idle.clear()
        self._work.set()

    async def submit_and_wait(self, op: WriteOp) -> WriteResult | None:
        """Queue ``op`` and wait for its result (for periodic jobs, not for hot paths)."""
        future: asyncio.Future[WriteResult | None] = asyncio.get_running_loop().create_future()

        def done(result: WriteResult | None) -> None:
            if not future.done():
                future.set_result(result)

        self.submit(op, done)
        return await future

    async def run(self) -> None:
        """Commit batches until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue:
                if all(isinstance(op, DeleteMessage) for op, _ in self._queue):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._work.wait(), ACK_DELAY)
                    self._work.clear()
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                ops = [op for op, _ in batch]
                results: list[WriteResult | None]
                try:
                    applied = await loop.run_in_executor(
                        self._executor, self._store.apply, ops, self._clock.now(), self._limits
                    )
                    results = list(applied)
                    self._counters["commits"] += 1
                except StorageError as exc:
                    _LOG.error("relay store: a batch of %d writes failed: %s", len(ops), exc)
                    self._counters["storage_errors"] += 1
                    results = [None] * len(ops)
                for (_, done), result in zip(batch, results, strict=True):
                    try:
                        done(result)
                    except Exception:  # one broken callback must not stall every writer
                        _LOG.exception("relay: a write callback failed")
            if not self._queue:
                self._idle.set()

    async def flush(self) -> None:
        """Wait until everything submitted so far has been committed (for shutdown)."""
        await self._idle.wait()
