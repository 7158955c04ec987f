"""The relay's one database thread: the store, the group committer, and the stall watch.

Every store call runs on one worker thread (stores are synchronous and need no locking of
their own); every call is timed, so a hung database is logged and counted as a stall
(``StallWatch``) without failing anything by itself. Writes go through the
:class:`~backchannel.relay.committer.GroupCommitter`, which answers each after its batch commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, cast

from backchannel.clock import Clock
from backchannel.relay.committer import Done, GroupCommitter
from backchannel.relay.config import RelayConfig
from backchannel.relay.mailbox import QueueLimits
from backchannel.relay.storage.base import MailboxStore, WriteOp, WriteResult
from backchannel.relay.storage.postgres import PostgresMailboxStore, is_postgres_url
from backchannel.relay.storage.sqlite import SqliteMailboxStore
from backchannel.relay.storage_health import StallWatch, StorageHealth

_T = TypeVar("_T")


class Database:
    """The store behind one worker thread; :meth:`open` it before use, :meth:`close` after."""

    def __init__(
        self,
        config: RelayConfig,
        clock: Clock,
        counters: dict[str, int],
        health: StorageHealth,
        observe_commit: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self._observe_commit = observe_commit
        self._clock = clock
        self._counters = counters
        self.health = health
        self.stalls = StallWatch(clock, counters, config.storage_stall_seconds)
        self._executor = _WatchedExecutor(self.stalls)
        self.limits = QueueLimits(config.max_mailbox_depth, config.max_mailboxes)
        self._store: MailboxStore | None = None
        self._committer: GroupCommitter | None = None

    @property
    def store(self) -> MailboxStore:
        assert self._store is not None, "the database is not open"
        return self._store

    @property
    def committer(self) -> GroupCommitter:
        assert self._committer is not None, "the database is not open"
        return self._committer

    @property
    def opened(self) -> bool:
        return self._store is not None

    async def open(self, given: MailboxStore | None, origin: str = "") -> None:
        """Use ``given``, or open the store ``config.db_path`` names (SQLite or PostgreSQL;
        ``origin`` names this process in the notifications a PostgreSQL store sends)."""
        store: MailboxStore
        if given is not None:
            store = given
        elif is_postgres_url(self.config.db_path):
            store = await self.run(PostgresMailboxStore, self.config.db_path, origin)
        else:
            store = await self.run(SqliteMailboxStore, self.config.db_path)
        self._store = store
        self._committer = GroupCommitter(
            store, self._executor, self.limits, self._clock, self._counters, self.health, self._observe_commit
        )

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a store call on the single database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def commit(self, op: WriteOp, done: Done) -> None:
        """Queue a write; ``done`` gets its result after its batch commits (None: failed)."""
        self.committer.submit(op, done)

    async def commit_and_wait(self, op: WriteOp) -> WriteResult | None:
        return await self.committer.submit_and_wait(op)

    async def depth_summary(self) -> tuple[int, int, int]:
        """Frames waiting, mailboxes held, frames in the deepest mailbox (for the metrics)."""
        return await self.run(self.store.depth_summary)

    async def watch_stalls(self) -> None:
        """Look at the database thread every second (StallWatch: a hang fails nothing)."""
        while True:
            await asyncio.sleep(1.0)
            self.stalls.check()

    async def flush(self) -> None:
        """Wait until every write submitted so far has committed (for shutdown)."""
        if self._committer is not None:
            await self._committer.flush()

    async def close(self) -> None:
        """Close the store and end the thread (after :meth:`flush` and the committer's end)."""
        if self._store is not None:
            await self.run(self._store.close)
            self._store = None
        self._executor.shutdown(wait=True)


def ignore(result: WriteResult | None) -> None:
    """The callback of a write nobody waits for (a failure was logged by the committer)."""


class _WatchedExecutor(ThreadPoolExecutor):
    """The one database thread; every call it runs is timed by the StallWatch."""

    def __init__(self, stalls: StallWatch) -> None:
        super().__init__(max_workers=1, thread_name_prefix="relay-db")
        self._stalls = stalls

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        timed = cast(Callable[..., _T], self._stalls.wrap(fn))
        return super().submit(timed, *args, **kwargs)
