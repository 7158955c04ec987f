"""Running the event loop of a station or relay process, and owning the tasks it runs.

uvloop (libuv) roughly halves the per-hop cost of asyncio networking, and a message makes
six hops between three processes, so the processes use it where it is installed. The
standard loop is the fallback: behaviour is the same, only slower.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_LOG = logging.getLogger(__name__)


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency on Linux
        return asyncio.run(main)
    return uvloop.run(main)


class TaskSet:
    """The tasks one component started: it owns them, and :meth:`close` ends them all.

    The one way ``src/`` starts a task (``tests/unit/test_tasks.py`` checks that no module
    calls ``create_task`` itself): a task nobody owns outlives the component that started it,
    and its exception is lost. A task that ends with an exception nobody awaits is logged
    (``report``) so a bug cannot pass in silence; pass ``report=False`` for a task whose owner
    awaits it and handles the outcome. :meth:`close` cancels what still runs and waits for it,
    so after it returns nothing of the component is left on the loop.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(
        self, coro: Coroutine[Any, Any, T], name: str | None = None, *, report: bool = True
    ) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self.name} is closed: no new task may start")
        task = asyncio.get_running_loop().create_task(coro, name=name or self.name)
        self._tasks.add(task)
        task.add_done_callback(self._report if report else self._tasks.discard)
        return task

    def _report(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOG.error("%s: task %s failed", self.name, task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float | None = None) -> None:
        """Cancel every task still running and wait until each has ended (``timeout``: then
        stop waiting; the tasks stay cancelled)."""
        self._closed = True
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def join(self, timeout: float | None = None) -> None:
        """Start no new task; let the running ones finish for up to ``timeout`` seconds, then
        :meth:`close` what is left (for tasks that are themselves an orderly shutdown)."""
        self._closed = True
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        await self.close()
