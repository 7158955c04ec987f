"""A line over relays whose databases fail (issue 14): each fault under a message stream.

Every test streams messages both ways over a line of two relays while a fault of the relays'
storage is on, ends the fault, and then requires 0 lost, 0 duplicated, 0 reordered, equal
transcript heads, and every message delivered within ``RECOVERY_BOUND`` seconds of the
fault's end. The seconds it took are recorded as the figure "recovery after <fault>" (and
``make chaos`` prints them). Faults:

- a TCP proxy between each relay and PostgreSQL resets connections after COMMIT (the
  indeterminate commit: stored, but the relay never hears so), before COMMIT, and in the
  middle of a statement (``support.pgproxy``);
- PostgreSQL is SIGKILLed under load and restarted; PostgreSQL is paused (SIGSTOP) for longer
  than the stations' request timeout and the relays' retry delays;
- an SQLite relay's disk fills up (a small tmpfs), and an SQLite relay's database becomes
  read-only.

Short variants run in ``make test``; ``make chaos`` (``BACKCHANNEL_CHAOS=1``) runs longer
streams. Seeds are printed and can be replayed with ``BACKCHANNEL_FAULT_SEED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backchannel.proto import frames
from backchannel.proto.frames import RelayErrorCode

from support.dbline import DbLine
from support.faultproxy import FaultProxy
from support.figures import figure
from support.pgproxy import PgFaultProxy
from support.postgres import PostgresCluster
from support.relay_clients import Mailbox, RawClient, binary
from support.relays import metrics, run, start_relay

CHAOS = os.environ.get("BACKCHANNEL_CHAOS") == "1"
#: Every message must be delivered within this many seconds of the fault's end.
RECOVERY_BOUND = 60.0
RELAY_CONFIG = {"redeliver_seconds": 1.0, "storage_stall_seconds": 2.0}


def _seed(name: str) -> int:
    seed = int(os.environ.get("BACKCHANNEL_FAULT_SEED", str(random.randrange(2**32))))
    print(f"fault {name}: BACKCHANNEL_FAULT_SEED={seed}")
    return seed


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {"stations": [], "relays": [], "proxies": [], "finally": []}
    yield started
    for st in started["stations"]:
        st.stop()
    for relay in started["relays"]:
        relay.stop()
    for proxy in started["proxies"]:
        proxy.stop()
    for action in started["finally"]:
        action()


def _pg_relays(
    tmp_path: Path, world: dict[str, Any], cluster: PostgresCluster, seed: int, count: int = 2
) -> list[PgFaultProxy]:
    """``count`` relays, each on its own database behind its own PostgreSQL fault proxy."""
    proxies = []
    for i in range(count):
        database = cluster.new_database().rsplit("/", 1)[1]
        proxy = PgFaultProxy(cluster.port, seed=seed + i)
        proxy.start()
        world["proxies"].append(proxy)
        world["relays"].append(start_relay(tmp_path, RELAY_CONFIG, name=f"relay{i}", db=proxy.url(database)))
        proxies.append(proxy)
    return proxies


PROXY_FAULTS = {
    "after_commit": {"after_commit": 0.3},
    "before_commit": {"before_commit": 0.3},
    "mid_statement": {"mid_statement": 0.05},
}


@pytest.mark.parametrize("fault", list(PROXY_FAULTS))
def test_a_line_survives_connection_resets_around_commits_on_every_relay(
    tmp_path: Path, world: dict[str, Any], postgres_cluster: PostgresCluster, fault: str
) -> None:
    """The acceptance test of issue 14 (with ``after_commit``): on today's main a frame stored
    by a commit whose reply was lost is never pushed, and the line stalls."""
    seed = _seed(fault)
    proxies = _pg_relays(tmp_path, world, postgres_cluster, seed)
    line = DbLine(tmp_path, [r.url for r in world["relays"]], world["stations"])
    for proxy in proxies:
        proxy.set_faults(PROXY_FAULTS[fault])
    messages = 300 if fault == "after_commit" or CHAOS else 100
    line.stream(messages)
    for proxy in proxies:
        proxy.set_faults({})
    hits = [p.counters[fault] for p in proxies]
    print(f"{fault}: resets per relay {hits}; commits {[p.counters['commits'] for p in proxies]}")
    assert all(h > 0 for h in hits), f"the {fault} fault never acted on some relay: {hits}"
    took = line.settle(RECOVERY_BOUND)
    figure(f"recovery after {fault}", took, "s")
    errors = sum(metrics(r).get("storage_errors", 0) for r in world["relays"])
    assert errors >= sum(hits)  # counted, not silent


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for one test alone: it is killed or paused (never the shared one)."""
    cluster = PostgresCluster()
    paused: list[int] = []
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            paused = cluster.server_pids()
        PostgresCluster.resume(paused)  # (a test that failed while the server was stopped)
        cluster.stop()


def _pg_line(tmp_path: Path, world: dict[str, Any], cluster: PostgresCluster) -> DbLine:
    for i in range(2):
        relay = start_relay(tmp_path, RELAY_CONFIG, name=f"relay{i}", db=cluster.new_database())
        world["relays"].append(relay)
    return DbLine(tmp_path, [r.url for r in world["relays"]], world["stations"])


def test_a_line_survives_postgresql_killed_and_restarted_under_load(
    tmp_path: Path, world: dict[str, Any], own_cluster: PostgresCluster
) -> None:
    line = _pg_line(tmp_path, world, own_cluster)
    down = 8.0 if CHAOS else 3.0
    line.stream(30)
    own_cluster.kill_hard()  # SIGKILL: the postmaster and every backend, no shutdown checkpoint
    killed_at = time.monotonic()
    line.stream(60 if CHAOS else 30)
    time.sleep(max(0.0, down - (time.monotonic() - killed_at)))
    own_cluster.restart_after_crash()  # crash recovery from the write-ahead log
    line.stream(30)
    took = line.settle(RECOVERY_BOUND)
    figure("recovery after postgres_killed", took, "s")
    counts = [metrics(r) for r in world["relays"]]
    assert all(c["storage_errors_connection"] > 0 for c in counts), counts
    assert all(c["storage_episodes"] >= 1 for c in counts), counts


def test_a_line_survives_postgresql_paused_longer_than_the_timeouts(
    tmp_path: Path, world: dict[str, Any], own_cluster: PostgresCluster
) -> None:
    """SIGSTOP: connections stay open and nothing answers; stations' requests time out
    (``relay_request_timeout`` 1 s) many times over and are retried."""
    line = _pg_line(tmp_path, world, own_cluster)
    pause = 15.0 if CHAOS else 5.0
    line.stream(30)
    pids = own_cluster.pause()
    world["finally"].append(lambda: PostgresCluster.resume(pids))
    paused_at = time.monotonic()
    line.stream(30)
    time.sleep(max(0.0, pause - (time.monotonic() - paused_at)))
    PostgresCluster.resume(pids)
    line.stream(30)
    took = line.settle(RECOVERY_BOUND)
    figure("recovery after postgres_paused", took, "s")
    # A hang fails nothing by itself: the relays' stall watch is what makes it visible.
    stalls = [metrics(r)["storage_stalls"] for r in world["relays"]]
    figure("stalls logged by the relays during the pause", sum(stalls), "stalls")
    assert all(n >= 1 for n in stalls), stalls


@pytest.fixture
def small_disks(tmp_path: Path) -> Iterator[list[Path]]:
    """Two 8 MiB tmpfs file systems (one per relay), unmounted at the end."""
    disks = []
    try:
        for i in range(2):
            disk = tmp_path / f"disk{i}"
            disk.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
            disks.append(disk)
        yield disks
    finally:
        for disk in disks:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Fill a file system to the last byte; returns the filler file (delete it to end the fault)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 512)
    return filler


def test_a_line_survives_a_full_disk_under_every_sqlite_relay(
    tmp_path: Path, world: dict[str, Any], small_disks: list[Path]
) -> None:
    relays = [
        start_relay(tmp_path, RELAY_CONFIG, name=f"relay{i}", db=str(disk / "relay.db"))
        for i, disk in enumerate(small_disks)
    ]
    world["relays"] += relays
    line = DbLine(tmp_path, [r.url for r in relays], world["stations"])
    line.stream(20)
    fillers = [_fill(disk) for disk in small_disks]
    line.stream(60 if CHAOS else 30)
    wait_until_counted = time.monotonic() + 30
    while not all(metrics(r)["storage_errors_disk_full"] > 0 for r in relays):
        assert time.monotonic() < wait_until_counted, [metrics(r) for r in relays]
        time.sleep(0.2)
    for filler in fillers:
        filler.unlink()
    line.stream(20)
    took = line.settle(RECOVERY_BOUND)
    figure("recovery after sqlite_disk_full", took, "s")
    assert all(r.running for r in relays)


def test_a_line_survives_a_relay_whose_sqlite_database_turns_read_only(
    tmp_path: Path, world: dict[str, Any], small_disks: list[Path]
) -> None:
    """The relay's file system goes read-only (as after disk errors) and the relay runs on it:
    it reads and pushes what is stored, every write fails (counted as ``read_only``), the
    line carries on over the other relay; once the file system is writable again, the relay
    stores again and everything is delivered.

    (Linux refuses to remount a file system read-only while a process holds a file on it
    open for writing, and root ignores file modes; so the relay is killed, the file system
    remounted read-only and the relay started on it: SQLite opens the database read-only.)"""
    relays = [
        start_relay(tmp_path, RELAY_CONFIG, name=f"relay{i}", db=str(disk / "relay.db"))
        for i, disk in enumerate(small_disks)
    ]
    world["relays"] += relays
    line = DbLine(tmp_path, [r.url for r in relays], world["stations"])
    line.stream(20)
    broken = relays[0]
    broken.kill()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disks[0])], check=True)
    broken.restart()
    line.stream(30)
    deadline = time.monotonic() + 30
    while metrics(broken)["storage_errors"] == 0:
        assert time.monotonic() < deadline, metrics(broken)
        time.sleep(0.2)
    print("read-only relay:", {k: v for k, v in metrics(broken).items() if k.startswith("storage")})
    subprocess.run(["mount", "-o", "remount,rw", str(small_disks[0])], check=True)
    stored = metrics(broken)["stored"]
    line.stream(20)
    took = line.settle(RECOVERY_BOUND)
    figure("recovery after sqlite_read_only", took, "s")
    print("after:", {k: v for k, v in metrics(broken).items() if k.startswith("stor")})
    assert metrics(broken)["stored"] > stored  # it stores again without a restart


def test_a_station_heals_a_stalled_gap_by_subscribing_again_without_an_operator(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    """A relay that holds a frame it never (successfully) pushed and will not push again for an
    hour (``redeliver_seconds`` 3600; DELIVERs dropped by a middlebox): the receiver's gap stays
    open, the sender's end-to-end resends are duplicates of a frame awaiting its ACK. The station
    SUBSCRIBEs again when the gap is half a link-test interval old, and the frame comes."""
    seed = _seed("stalled_gap")
    relay = start_relay(tmp_path, {"redeliver_seconds": 3600.0}, name="relay")
    world["relays"].append(relay)
    proxy = FaultProxy(relay.port, {}, seed=seed)
    proxy.start()
    world["proxies"].append(proxy)
    line = DbLine(tmp_path, [proxy.url], world["stations"])
    proxy.set_faults({"drop": 0.1})
    line.stream(40)
    proxy.set_faults({})
    assert proxy.counters["dropped"] > 0
    took = line.settle(30.0)
    figure("recovery after a stalled gap (dropped DELIVERs, no redelivery)", took, "s")
    logs = line.a.stderr_text() + line.b.stderr_text()
    figure("re-subscriptions for an open gap", logs.count("subscribed again"))
    assert "subscribed again" in logs


def test_the_relay_answers_a_lost_commit_reply_by_reading_back_and_pushes_the_frame(
    tmp_path: Path, world: dict[str, Any], postgres_cluster: PostgresCluster
) -> None:
    """The wire-level rule of PROTOCOL §3.4: a commit whose reply is lost is read back by
    ``msg_id`` (STORED, and pushed to the live subscription); a commit that never happened is
    refused (INTERNAL), and the retry is stored and pushed once."""
    (proxy,) = _pg_relays(tmp_path, world, postgres_cluster, seed=1, count=1)
    relay = world["relays"][0]

    async def scenario() -> None:
        receiver, sender = await RawClient.open(relay.url), await RawClient.open(relay.url)
        box = await receiver.create()
        assert isinstance(box, Mailbox)
        assert isinstance(await receiver.subscribe(box), frames.Ok)
        assert isinstance(await sender.auth_send(box), frames.Ok)

        async def send(payload: bytes) -> frames.Frame:
            return await sender.request(frames.Send(sender.rid(), box.send_id, payload), timeout=20)

        async def delivered() -> bytes:
            async with asyncio.timeout(10):
                while not isinstance(
                    frame := frames.decode(binary(await receiver.ws.recv()), 2**22), frames.Deliver
                ):
                    pass  # (the replies to our ACKs: OK, or INTERNAL while a fault is on)
            await receiver.ws.send(frames.encode(frames.Ack(receiver.rid(), box.recv_id, frame.msg_id)))
            return frame.payload

        proxy.set_faults({"after_commit": 1.0})
        assert isinstance(await send(b"committed, reply lost"), frames.Stored)
        assert await delivered() == b"committed, reply lost"
        proxy.set_faults({"before_commit": 1.0})
        refused = await send(b"never committed")
        assert isinstance(refused, frames.Error) and refused.code == RelayErrorCode.INTERNAL
        proxy.set_faults({})
        while isinstance(reply := await send(b"never committed"), frames.Error):
            await asyncio.sleep(0.2)  # (the ACK above may share a failed batch: retried too)
        assert isinstance(reply, frames.Stored)
        payload = await delivered()
        while payload == b"committed, reply lost":  # (a catch-up copy of the first, its ACK unsure)
            payload = await delivered()
        assert payload == b"never committed"
        await receiver.close()
        await sender.close()

    run(scenario(), timeout=90)
    counts = metrics(relay)
    figure("SENDs found stored by reading back", counts["storage_found_stored"])
    assert counts["storage_found_stored"] >= 1 and counts["storage_episodes"] >= 1
