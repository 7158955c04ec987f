"""Group commit: many SENDs and ACKs, one transaction, one fsync.

Theory of operation
-------------------
Handlers never touch the store for writes. They :meth:`GroupCommitter.submit` an operation
with a callback and return at once, so a connection keeps reading while its earlier
requests wait for the disk. One task drains everything submitted so far into a batch, runs
the batch in the store's worker thread (``MailboxStore.apply``: one transaction), and after
the commit calls each callback with its result, in submission order. While a commit runs,
new work piles up and becomes the next batch: under load a batch holds hundreds of frames,
and throughput grows far beyond one fsync per frame.

A failed batch has an *unknown* outcome: a database that committed may have lost the
connection before the reply reached the relay (the indeterminate commit). So the committer
does not guess: it reads the frames (and mailboxes) of the batch again by id. A frame found
stored is answered as stored (``DUPLICATE`` with its sequence number: the server then makes
sure it is pushed); one not found, or every op when the re-read fails too, gets ``None``
(the handler answers INTERNAL, "retry later": nothing was stored, or the relay cannot tell,
and a retry is idempotent). The committer carries on with the next batch.
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
from backchannel.relay.mailbox import QueueLimits, message_id
from backchannel.relay.storage.base import (
    AddMailbox,
    DeleteMessage,
    MailboxStore,
    Outcome,
    PutMessage,
    WriteOp,
    WriteResult,
)
from backchannel.relay.storage_health import StorageHealth

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
        health: StorageHealth,
        observe_commit: Callable[[float], None] | None = None,
    ) -> None:
        self._health = health
        #: Told each transaction's duration in seconds (the commit-latency histogram).
        self._observe_commit = observe_commit
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
                    started = self._clock.monotonic()
                    applied = await loop.run_in_executor(
                        self._executor, self._store.apply, ops, self._clock.now(), self._limits
                    )
                    if self._observe_commit is not None:
                        self._observe_commit(self._clock.monotonic() - started)
                    results = list(applied)
                    self._counters["commits"] += 1
                    self._health.succeeded(write=True)
                except StorageError as exc:
                    self._health.failed(f"a batch of {len(ops)} writes", exc, write=True)
                    results = await self._find_out(ops)
                for (_, done), result in zip(batch, results, strict=True):
                    try:
                        done(result)
                    except Exception:  # one broken callback must not stall every writer
                        _LOG.exception("relay: a write callback failed")
            if not self._queue:
                self._idle.set()

    async def _find_out(self, ops: list[WriteOp]) -> list[WriteResult | None]:
        """What a failed batch really did, read back by id (None where unknown or not done)."""
        results: list[WriteResult | None] = [None] * len(ops)
        keys = [(op.recv_id, message_id(op.payload)) for op in ops if isinstance(op, PutMessage)]
        adds = [op for op in ops if isinstance(op, AddMailbox)]
        if not keys and not adds:
            return results
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self._executor, self._store.find_messages, keys)
            created = set()
            for add in adds:
                record = await loop.run_in_executor(
                    self._executor, self._store.mailbox_by_recv, add.mailbox.recv_id
                )
                if record is not None and record.recv_key == add.mailbox.recv_key:
                    created.add(add.mailbox.recv_id)
        except StorageError as exc:
            self._health.failed("reading back a failed batch", exc)
            return results
        for i, op in enumerate(ops):
            if isinstance(op, PutMessage):
                msg_id = message_id(op.payload)
                seq = found.get((op.recv_id, msg_id))
                if seq is not None:
                    results[i] = WriteResult(Outcome.DUPLICATE, msg_id, count=seq)
                    self._counters["storage_found_stored"] += 1
            elif isinstance(op, AddMailbox) and op.mailbox.recv_id in created:
                results[i] = WriteResult(Outcome.CREATED)
        return results

    async def flush(self) -> None:
        """Wait until everything submitted so far has been committed (for shutdown)."""
        await self._idle.wait()
