"""The documented deployment: HAProxy (Debian's) in front of two relay processes on one
PostgreSQL database, one address for both; a pair of stations works through it.

HAProxy spreads the stations' connections over both processes (round robin), so frames are
stored through one process and delivered through the other; every message arrives once, in
order, both ways.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.figures import figure
from support.haproxy import HaproxyProcess
from support.postgres import PostgresCluster
from support.relays import metrics, start_relay
from support.stations import StationProcess, heads_equal, pair, wait_until

MESSAGES = 20


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {"stations": [], "proxies": [], "relays": []}
    yield started
    for st in started["stations"]:
        st.stop()
    for proxy in started["proxies"]:
        proxy.stop()
    for relay in started["relays"]:
        relay.stop()


def test_a_line_works_through_haproxy_in_front_of_two_relay_processes(
    tmp_path: Path, world: dict[str, Any], postgres_cluster: PostgresCluster
) -> None:
    url = postgres_cluster.new_database()
    relays = [start_relay(tmp_path, name=f"relay{n}", db=url) for n in (1, 2)]
    world["relays"].extend(relays)
    proxy = HaproxyProcess(tmp_path / "haproxy", [r.port for r in relays])
    world["proxies"].append(proxy)
    a, b = StationProcess(tmp_path, "lisbon"), StationProcess(tmp_path, "oslo")
    for st in (a, b):
        st.start()
        world["stations"].append(st)
    a_line, b_line = pair(a, b, proxy.url)
    for i in range(MESSAGES):
        a.call("send", line=a_line, text=f"a{i:03d}")
        b.call("send", line=b_line, text=f"b{i:03d}")

    def inbox(st: StationProcess, line: str) -> list[str]:
        return [m["text"] for m in reversed(st.call("inbox", line=line, limit=1000))]

    expected_b = [f"a{i:03d}" for i in range(MESSAGES)]
    expected_a = [f"b{i:03d}" for i in range(MESSAGES)]
    wait_until("every message at oslo", lambda: len(inbox(b, b_line)) >= MESSAGES, timeout=60)
    wait_until("every message at lisbon", lambda: len(inbox(a, a_line)) >= MESSAGES, timeout=60)
    assert inbox(b, b_line) == expected_b
    assert inbox(a, a_line) == expected_a
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line))
    counts = [metrics(r) for r in relays]
    fewest = min(c["connections"] for c in counts)
    figure("connections the less used relay process took through HAProxy", fewest, "connections")
    shown = ("connections", "stored", "notifications_received")
    print("per process:", [{k: c[k] for k in shown} for c in counts])
    assert fewest >= 1  # both processes served the line
    # Round robin put the two stations on different processes: the frames crossed between them.
    assert sum(c["notifications_received"] for c in counts) > 0
