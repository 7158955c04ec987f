"""Freed send-buffer room wakes only the waiters it can serve (PERFORMANCE.md §5.2).

Before: every frame written woke every connection of the address (155 million wake-ups at
1,000 stations behind one address), and every release woke every pump of a connection. These
scenarios count the waits satisfied (``AddressBudget.wakeups``) and the connections touched,
and bound them by the work done, not by connections x frames.
"""

from __future__ import annotations

import asyncio
from typing import Any

from backchannel.proto import frames
from backchannel.relay.connection import AddressBudget, RelayConnection

from support.figures import figure

FRAME = frames.Deliver(b"r" * frames.ID_LEN, b"m" * frames.ID_LEN, b"p" * 64)
SIZE = len(frames.encode(FRAME))


class _Socket:
    """Takes every frame at once (a client that reads), yielding to the loop like a send."""

    transport = None

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, data: bytes) -> None:
        self.sent += 1
        await asyncio.sleep(0)


def _conn(budget: AddressBudget, send_buffer: int = 4 * 1024 * 1024) -> RelayConnection:
    ws: Any = _Socket()
    return RelayConnection(ws, b"n" * 32, budget=budget, send_buffer=send_buffer)


class _Counting(RelayConnection):
    grants = 0

    def grant(self) -> bool:
        type(self).grants += 1
        return super().grant()


def test_frames_written_behind_one_address_wake_nobody_when_nobody_waits() -> None:
    async def scenario() -> tuple[int, int]:
        budget = AddressBudget()
        ws: list[Any] = [_Socket() for _ in range(1000)]
        conns = [_Counting(w, b"n" * 32, budget=budget) for w in ws]
        flushers = [asyncio.create_task(c.flush_forever()) for c in conns]
        for _ in range(10):
            for c in conns:
                c.push(FRAME)
            await asyncio.sleep(0)
        while budget.buffered:
            await asyncio.sleep(0.001)
        for task in flushers:
            task.cancel()
        await asyncio.gather(*flushers, return_exceptions=True)
        return budget.wakeups, _Counting.grants

    wakeups, grants = asyncio.run(asyncio.wait_for(scenario(), 60))
    figure("wake-ups for 10,000 frames to 1,000 connections of one address", wakeups, "wake-ups")
    figure("connections examined for them (before: 10,000,000)", grants, "connections")
    assert wakeups == 0 and grants == 0


def test_ten_thousand_pumps_of_one_connection_are_each_woken_once() -> None:
    """One connection, 10,000 subscriptions: each pump asks for room for 512 frames, takes
    one, gives the rest back. Every release used to wake all 10,000 pumps (10^8 wake-ups);
    now each pump is woken once, when its turn's room is handed to it."""

    async def scenario() -> tuple[int, int]:
        budget = AddressBudget()
        conn = _conn(budget, send_buffer=8 * SIZE)
        flusher = asyncio.create_task(conn.flush_forever())
        conn.push(FRAME)  # something queued, so the first pumps must wait their turn
        served = 0

        async def pump() -> None:
            nonlocal served
            room = await conn.reserve(512, SIZE)
            await asyncio.sleep(0)  # (the store read)
            conn.push(FRAME)
            conn.release(room, SIZE)
            served += 1

        pumps = [asyncio.create_task(pump()) for _ in range(10_000)]
        await asyncio.gather(*pumps)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        return budget.wakeups, served

    wakeups, served = asyncio.run(asyncio.wait_for(scenario(), 60))
    figure("wake-ups for 10,000 pumps of one connection (before: ~10^8)", wakeups, "wake-ups")
    assert served == 10_000
    assert wakeups <= 10_000


def test_an_address_over_its_budget_serves_its_waiting_connections_in_order_one_wake_each() -> None:
    """200 connections of one address, whose budget has room for 4 frames: each connection's
    pump waits for the address, and each frame written wakes at most the next in line."""

    async def scenario() -> tuple[int, list[int]]:
        budget = AddressBudget(send_buffer=4 * SIZE)
        conns = [_conn(budget) for _ in range(200)]
        flushers = [asyncio.create_task(c.flush_forever()) for c in conns]
        holder = _conn(budget)
        for _ in range(4):
            holder.push(FRAME)  # the address is full until the holder's frames are written
        order: list[int] = []

        async def pump(i: int) -> None:
            conns[i].push(FRAME)  # its own frame queued: it may not take the "empty" exception
            room = await conns[i].reserve(1, SIZE)
            order.append(i)
            conns[i].push(FRAME)
            conns[i].release(room, SIZE)

        pumps = []
        for i in range(200):
            pumps.append(asyncio.create_task(pump(i)))
            await asyncio.sleep(0)
        holder_flush = asyncio.create_task(holder.flush_forever())
        await asyncio.gather(*pumps)
        for task in [*flushers, holder_flush]:
            task.cancel()
        await asyncio.gather(*flushers, holder_flush, return_exceptions=True)
        return budget.wakeups, order

    wakeups, order = asyncio.run(asyncio.wait_for(scenario(), 60))
    figure("wake-ups for 200 connections waiting on one full address", wakeups, "wake-ups")
    assert sorted(order) == list(range(200))
    assert wakeups <= 200
