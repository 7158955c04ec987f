"""Two relay processes on one PostgreSQL database serve the same mailboxes.

A frame stored through one process reaches a subscriber connected to the other by two paths,
each shown alone here: PostgreSQL notifications (catch-up reads made rare), and catch-up reads
(notifications switched off); what was stored while a process's LISTEN connection was down
arrives when it listens again. An ACK made through one process is respected by the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backchannel.proto import frames

from support.figures import figure
from support.postgres import PostgresCluster
from support.relay_clients import Mailbox, RawClient, binary
from support.relays import RelayProcess, metrics, run, start_relay

FRAMES = 40


@pytest.fixture
def relays() -> Iterator[list[RelayProcess]]:
    started: list[RelayProcess] = []
    yield started
    for relay in started:
        relay.stop()


def two_relays(
    tmp_path: Path, cluster: PostgresCluster, started: list[RelayProcess], receiving: dict[str, Any]
) -> tuple[RelayProcess, RelayProcess]:
    """Process A (where frames are stored) and process B (where they are subscribed), one database."""
    url = cluster.new_database()
    a = start_relay(tmp_path, name="a", db=url)
    started.append(a)
    b = start_relay(tmp_path, receiving, name="b", db=url)
    started.append(b)
    return a, b


async def stream_across(a: RelayProcess, b: RelayProcess, count: int, ack: bool = True) -> list[float]:
    """Store ``count`` frames through A, one at a time, while B's subscriber takes them; return
    each frame's time from STORED to DELIVER at the subscriber, in seconds."""
    sender, receiver = await RawClient.open(a.url), await RawClient.open(b.url)
    box = await sender.create()
    assert isinstance(box, Mailbox)
    assert isinstance(await receiver.subscribe(box), frames.Ok)
    assert isinstance(await sender.auth_send(box), frames.Ok)
    latencies: list[float] = []
    #: (msg_id, arrival) of each distinct frame delivered, in order of arrival.
    seen: list[tuple[bytes, float]] = []

    async def take() -> None:
        while len(seen) < count:
            frame = frames.decode(binary(await receiver.ws.recv()), 2**22)
            if isinstance(frame, frames.Deliver) and all(frame.msg_id != m for m, _ in seen):
                seen.append((frame.msg_id, time.monotonic()))
                if ack:
                    ack_frame = frames.Ack(receiver.rid(), box.recv_id, frame.msg_id)
                    await receiver.ws.send(frames.encode(ack_frame))

    taker = asyncio.ensure_future(take())
    try:
        for i in range(count):
            reply = await sender.request(frames.Send(sender.rid(), box.send_id, b"frame %04d" % i))
            assert isinstance(reply, frames.Stored), reply
            stored = time.monotonic()
            while len(seen) <= i:
                await asyncio.sleep(0.001)
            msg_id, arrived = seen[i]
            assert msg_id == reply.msg_id, "frames arrived out of order"
            latencies.append(max(0.0, arrived - stored))
        await taker
    finally:
        taker.cancel()
        await sender.close()
        await receiver.close()
    return latencies


def test_notifications_carry_frames_between_processes(
    tmp_path: Path, relays: list[RelayProcess], postgres_cluster: PostgresCluster
) -> None:
    # Catch-up reads once an hour: only notifications can bring the frames promptly.
    a, b = two_relays(tmp_path, postgres_cluster, relays, {"catch_up_interval_seconds": 3600.0})
    latencies = run(stream_across(a, b, FRAMES), timeout=60)
    p50, worst = statistics.median(latencies), max(latencies)
    figure("store-to-deliver across processes by notification, p50", round(p50 * 1000, 2), "ms")
    figure("store-to-deliver across processes by notification, max", round(worst * 1000, 2), "ms")
    assert worst < 2.0, latencies
    counts = metrics(b)
    assert counts["notifications_received"] >= FRAMES
    assert counts["catch_up_reads"] == 0
    assert counts["delivered"] == FRAMES


def test_catch_up_reads_carry_frames_when_notifications_are_off(
    tmp_path: Path, relays: list[RelayProcess], postgres_cluster: PostgresCluster
) -> None:
    # B never listens: every frame stored through A must be found by B's catch-up reads.
    interval = 0.3
    settings = {"listen_notifications": False, "catch_up_interval_seconds": interval}
    a, b = two_relays(tmp_path, postgres_cluster, relays, settings)
    latencies = run(stream_across(a, b, 10), timeout=60)
    worst = max(latencies)
    figure("store-to-deliver across processes by catch-up read (every 0.3 s), max", round(worst, 3), "s")
    assert worst < interval + 2.0, latencies
    counts = metrics(b)
    assert counts["notifications_received"] == 0
    assert counts["notifications_missed"] >= 10  # each frame found by a catch-up read
    assert counts["delivered"] == 10


def test_an_ack_through_one_process_is_respected_by_the_other(
    tmp_path: Path, relays: list[RelayProcess], postgres_cluster: PostgresCluster
) -> None:
    a, b = two_relays(tmp_path, postgres_cluster, relays, {})

    async def scenario() -> tuple[int, int]:
        # Three frames stored through A, taken and acknowledged through B: none is left for a
        # subscriber on A.
        sender = await RawClient.open(a.url)
        box = await sender.create()
        assert isinstance(box, Mailbox)
        assert await sender.fill(box, 3, 64) == 3
        first = await RawClient.open(b.url)
        assert isinstance(await first.subscribe(box), frames.Ok)
        taken: list[bytes] = []
        async with asyncio.timeout(10):
            while len(taken) < 3:
                frame = frames.decode(binary(await first.ws.recv()), 2**22)
                if isinstance(frame, frames.Deliver):
                    taken.append(frame.msg_id)
        for msg_id in taken:
            assert isinstance(await first.request(frames.Ack(first.rid(), box.recv_id, msg_id)), frames.Ok)
        await first.close()
        again = await RawClient.open(a.url)
        assert isinstance(await again.subscribe(box), frames.Ok)
        redelivered = 0
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                while True:
                    frame = frames.decode(binary(await again.ws.recv()), 2**22)
                    redelivered += isinstance(frame, frames.Deliver)
        await again.close()
        await sender.close()
        return len(taken), redelivered

    taken, redelivered = run(scenario(), timeout=60)
    figure("frames acknowledged through B then pushed again by A", redelivered, "frames")
    assert taken == 3
    assert redelivered == 0


def test_frames_stored_while_the_listener_was_down_arrive_when_it_listens_again(
    tmp_path: Path, relays: list[RelayProcess], postgres_cluster: PostgresCluster
) -> None:
    # A does not listen (so the only LISTEN session is B's); B's periodic catch-up is hourly: only
    # the catch-up made when its LISTEN connection comes back can deliver what it missed.
    url = postgres_cluster.new_database()
    database = url.rsplit("/", 1)[1]
    a = start_relay(tmp_path, {"listen_notifications": False}, name="a", db=url)
    relays.append(a)
    b = start_relay(tmp_path, {"catch_up_interval_seconds": 3600.0}, name="b", db=url)
    relays.append(b)

    def admin(sql: str) -> None:
        with psycopg.connect(postgres_cluster.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    async def scenario() -> tuple[int, int]:
        sender, receiver = await RawClient.open(a.url), await RawClient.open(b.url)
        box = await sender.create()
        assert isinstance(box, Mailbox)
        assert isinstance(await receiver.subscribe(box), frames.Ok)
        assert isinstance(await sender.auth_send(box), frames.Ok)
        admin(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        try:
            admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{database}' AND query LIKE 'LISTEN%'"
            )
            async with asyncio.timeout(20):
                while metrics(b)["listen_failures"] < 1:
                    await asyncio.sleep(0.05)
            for i in range(5):
                reply = await sender.request(frames.Send(sender.rid(), box.send_id, b"missed %d" % i))
                assert isinstance(reply, frames.Stored)
            early = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    while True:
                        frame = frames.decode(binary(await receiver.ws.recv()), 2**22)
                        early += isinstance(frame, frames.Deliver)
        finally:
            admin(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        late = 0
        async with asyncio.timeout(20):
            while early + late < 5:
                frame = frames.decode(binary(await receiver.ws.recv()), 2**22)
                late += isinstance(frame, frames.Deliver)
        await sender.close()
        await receiver.close()
        return early, late

    started = time.monotonic()
    early, late = run(scenario(), timeout=60)
    figure("frames stored while B's LISTEN was down, delivered after it came back", late, "frames")
    print(f"scenario took {time.monotonic() - started:.1f} s")
    assert (early, late) == (0, 5)
    counts = metrics(b)
    assert counts["listens"] == 2 and counts["catch_up_reads"] == 0
