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

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.dbline import DbLine
from support.figures import figure
from support.pgproxy import PgFaultProxy
from support.postgres import PostgresCluster
from support.relays import metrics, start_relay

CHAOS = os.environ.get("BACKCHANNEL_CHAOS") == "1"
#: Every message must be delivered within this many seconds of the fault's end.
RECOVERY_BOUND = 60.0
RELAY_CONFIG = {"redeliver_seconds": 1.0}


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
