"""The drain of a rotated mailbox counts only time connected to its relay (PROTOCOL §4).

Frames the peer sent to the old mailbox while we were away wait at the relay; a DELETE sent
the moment the link comes back would destroy them. These tests drive ``Rotations.tick`` with
a fake clock and fake links/store (the rule is local to the rotation module; the real relay
round trip is covered by tests/faults/test_rotation_crash.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, cast

from backchannel.clock import FakeClock, FakeRng
from backchannel.errors import BackchannelError
from backchannel.station.config import StationConfig
from backchannel.station.rotation import Rotations

URL = "ws://relay.invalid:1"
LINE = b"L" * 16
OLD = b"old-mailbox-id.."
DRAIN = 60.0


class FakeLink:
    request_timeout = 5.0

    def __init__(self) -> None:
        self.registration_errors: dict[bytes, BackchannelError] = {}
        self.deleted: list[bytes] = []

    async def wait_connected(self, timeout: float) -> None:
        return None

    async def delete_mailbox(self, recv_id: bytes) -> None:
        self.deleted.append(recv_id)

    def unsubscribe(self, recv_id: bytes) -> None:
        return None


class FakeLinks:
    def __init__(self) -> None:
        self.on_link_state: list[Any] = []
        self.the_link = FakeLink()

    def link(self, url: str) -> FakeLink:
        return self.the_link

    def state(self, up: bool) -> None:
        for callback in self.on_link_state:
            callback(URL, up)


class FakeStore:
    def __init__(self, applied_at: float) -> None:
        self.rows = [(LINE, URL, OLD, 7, applied_at)]

    def rotated_mailboxes(self) -> list[tuple[bytes, str, bytes, int, float | None]]:
        return list(self.rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield

    def forget_rotated(self, recv_id: bytes) -> None:
        self.rows = [row for row in self.rows if row[2] != recv_id]

    def count(self, name: str, n: int = 1) -> None:
        return None


class FakeLines:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rng = FakeRng()

    def established(self) -> list[bytes]:
        return []


def rotations(clock: FakeClock) -> tuple[Rotations, FakeLinks, FakeStore]:
    links, store = FakeLinks(), FakeStore(applied_at=clock.now())
    config = StationConfig(rotate_every=0, rotation_drain_seconds=DRAIN)
    lines = cast(Any, FakeLines(clock))
    made = Rotations(
        lines, cast(Any, links), cast(Any, None), cast(Any, None), cast(Any, None), cast(Any, store), config
    )
    return made, links, store


async def tick_and_settle(made: Rotations) -> None:
    made.tick()
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_mailbox_drained_while_disconnected_is_not_deleted_on_reconnection() -> None:
    async def run() -> None:
        clock = FakeClock()
        made, links, store = rotations(clock)
        clock.advance(DRAIN * 10)  # the whole drain passes with the link down
        await tick_and_settle(made)
        assert links.the_link.deleted == []
        links.state(up=True)  # the link comes back: the relay now delivers what waited
        await tick_and_settle(made)
        assert links.the_link.deleted == [], "DELETE sent at once on reconnection"
        clock.advance(DRAIN - 1)
        await tick_and_settle(made)
        assert links.the_link.deleted == []
        clock.advance(2)
        await tick_and_settle(made)
        assert links.the_link.deleted == [OLD]
        assert store.rows == []
        await made.close()

    asyncio.run(run())


def test_a_break_in_the_link_restarts_the_drain() -> None:
    async def run() -> None:
        clock = FakeClock()
        made, links, _ = rotations(clock)
        links.state(up=True)
        clock.advance(DRAIN - 5)
        links.state(up=False)  # dropped just before the drain ended
        clock.advance(10)
        links.state(up=True)
        await tick_and_settle(made)
        assert links.the_link.deleted == [], "time disconnected counted towards the drain"
        clock.advance(DRAIN + 1)
        await tick_and_settle(made)
        assert links.the_link.deleted == [OLD]
        await made.close()

    asyncio.run(run())
