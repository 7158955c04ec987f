"""The per-address byte budget: uncommitted SEND payloads of all an address's connections."""

from __future__ import annotations

import asyncio
from typing import Any

from backchannel.proto import frames
from backchannel.relay.connection import AddressBudget, RelayConnection


def _conn(budget: AddressBudget) -> RelayConnection:
    ws: Any = object()  # never written to here
    return RelayConnection(ws, b"n" * 32, budget=budget, in_flight_bytes=1000)


def test_a_connection_waits_while_its_address_holds_its_whole_in_flight_budget() -> None:
    async def scenario() -> list[str]:
        budget = AddressBudget(in_flight_bytes=100)
        first, second = _conn(budget), _conn(budget)
        events: list[str] = []
        first.hold(100)
        second.hold(10)

        async def reader() -> None:
            await second.wait_to_read()
            events.append("second reads")

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.01)
        events.append("first commits")
        first.unhold(100)
        await asyncio.wait_for(task, 5)
        return events

    assert asyncio.run(scenario()) == ["first commits", "second reads"]


def test_a_connection_holding_nothing_may_always_read_one_request() -> None:
    async def scenario() -> None:
        budget = AddressBudget(in_flight_bytes=100)
        first, second = _conn(budget), _conn(budget)
        first.hold(500)
        await asyncio.wait_for(second.wait_to_read(), 5)  # progress for every connection

    asyncio.run(scenario())


def test_leaving_gives_the_address_its_room_back() -> None:
    budget = AddressBudget(send_buffer=10_000)
    conn = _conn(budget)
    conn.push(frames.Welcome(b"n" * 32))
    assert budget.buffered > 0
    conn.leave()
    assert budget.buffered == 0 and conn not in budget.members
