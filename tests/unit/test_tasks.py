"""Every task src/ starts is owned (backchannel.aio.TaskSet) and ended when its owner closes."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from backchannel.aio import TaskSet

SRC = Path(__file__).resolve().parents[2] / "src" / "backchannel"


def test_no_module_starts_a_task_outside_the_owned_helper() -> None:
    """A bare create_task/ensure_future is a task nobody cancels or awaits on close."""
    offenders = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in SRC.rglob("*.py")
        if path.name != "aio.py" or path.parent != SRC
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\b(create_task|ensure_future)\s*\(", line)
    ]
    assert offenders == []


def test_close_cancels_and_awaits_every_task_and_refuses_new_ones() -> None:
    async def main() -> None:
        tasks = TaskSet("test")
        ended: list[str] = []

        async def forever(name: str) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                ended.append(name)

        for name in ("a", "b", "c"):
            tasks.spawn(forever(name))
        await asyncio.sleep(0)
        assert len(tasks) == 3
        await tasks.close()
        assert sorted(ended) == ["a", "b", "c"] and len(tasks) == 0
        assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()
        with pytest.raises(RuntimeError, match="closed"):
            tasks.spawn(forever("late"))

    asyncio.run(main())


def test_join_lets_running_tasks_finish_before_cancelling_the_rest() -> None:
    async def main() -> list[str]:
        tasks = TaskSet("test")
        done: list[str] = []

        async def quick() -> None:
            await asyncio.sleep(0.01)
            done.append("quick")

        async def stuck() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                done.append("stuck cancelled")

        tasks.spawn(quick())
        tasks.spawn(stuck())
        await tasks.join(timeout=0.5)
        return done

    assert asyncio.run(main()) == ["quick", "stuck cancelled"]


def test_a_task_that_fails_unawaited_is_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        tasks = TaskSet("test")

        async def broken() -> None:
            raise ValueError("a bug")

        tasks.spawn(broken(), "broken")
        await tasks.join(timeout=1.0)

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert any("broken" in r.getMessage() and r.exc_info for r in caplog.records)
