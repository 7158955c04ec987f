"""A line through two relays, each behind a fault-injecting proxy, under each fault in turn.

The proxies drop, delay, duplicate or reorder WebSocket frames, or cut connections, driven
by a printed seed (replay with ``BACKCHANNEL_FAULT_SEED``). A stream of messages goes both
ways while the fault is on; then the fault is turned off and everything must arrive exactly
once, in order, with equal transcripts on both sides.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.faultproxy import FaultProxy
from support.relays import start_relay
from support.stations import StationProcess, heads_equal, wait_until

FAULTS: dict[str, dict[str, float]] = {
    "drop": {"drop": 0.08},
    "delay": {"delay": 40.0},
    "duplicate": {"duplicate": 0.3},
    "reorder": {"reorder": 0.3},
    "cut": {"cut": 1.5},
    "everything": {"drop": 0.03, "delay": 20.0, "duplicate": 0.1, "reorder": 0.1, "cut": 0.5},
}
MESSAGES = 60  # each way


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {"stations": [], "relays": [], "proxies": []}
    yield started
    for st in started["stations"]:
        st.stop()
    for proxy in started["proxies"]:
        proxy.stop()
    for relay in started["relays"]:
        relay.stop()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_line_delivers_exactly_once_in_order_under_each_fault(
    tmp_path: Path, world: dict[str, Any], fault: str
) -> None:
    seed = int(os.environ.get("BACKCHANNEL_FAULT_SEED", str(random.randrange(2**32))))
    print(f"fault {fault}: BACKCHANNEL_FAULT_SEED={seed}")
    relays = [start_relay(tmp_path, {"redeliver_seconds": 1.0}, name=f"relay{i}") for i in range(2)]
    world["relays"] += relays
    proxies = [FaultProxy(relay.port, {}, seed=seed + i) for i, relay in enumerate(relays)]
    for proxy in proxies:
        proxy.start()
    world["proxies"] += proxies
    a, b = StationProcess(tmp_path, "alpha"), StationProcess(tmp_path, "bravo")
    for st in (a, b):
        (st.home / "station.toml").write_text(
            "[station]\nrelay_request_timeout = 1.0\nlink_test_interval = 1.0\nretry_max_seconds = 1.0\n"
        )
        st.start()
        world["stations"].append(st)
    text = a.call("invite", relay=[p.url for p in proxies], name="bravo")["text"]
    b.call("accept", text=text, name="alpha")
    wait_until("the line", lambda: b.call("line", name="alpha")["state"] == "established")

    for proxy in proxies:
        proxy.set_faults(FAULTS[fault])
    deadline = time.monotonic() + 60
    for i in range(MESSAGES):
        a.call("send", line="bravo", text=f"a{i:04d}")
        b.call("send", line="alpha", text=f"b{i:04d}")
        time.sleep(0.02)
    assert time.monotonic() < deadline
    expected = {
        "drop": "dropped",
        "delay": "delayed",
        "duplicate": "duplicated",
        "reorder": "reordered",
        "cut": "cuts",
    }

    def happened() -> dict[str, int]:
        return {k: sum(p.counters.get(k, 0) for p in proxies) for k in expected.values()}

    # The faults are random: keep them on (link tests keep traffic flowing) until each one
    # named has acted at least once, so the run tests what it says whatever the seed.
    time.sleep(1.0)
    wait_until(
        f"every fault of {sorted(FAULTS[fault])} to act at least once",
        lambda: all(happened()[expected[name]] > 0 for name in FAULTS[fault]),
        timeout=30,
    )
    for proxy in proxies:
        proxy.set_faults({})

    def texts(station: StationProcess, line: str) -> list[str]:
        return [m["text"] for m in reversed(station.call("inbox", line=line, limit=10_000))]

    wait_until(
        "everything delivered once the fault is off",
        lambda: len(texts(b, "alpha")) == MESSAGES and len(texts(a, "bravo")) == MESSAGES,
        timeout=60,
    )
    assert texts(b, "alpha") == [f"a{i:04d}" for i in range(MESSAGES)]
    assert texts(a, "bravo") == [f"b{i:04d}" for i in range(MESSAGES)]
    wait_until("equal transcripts", lambda: heads_equal(a, "bravo", b, "alpha"), timeout=30)
    counts = happened()
    for name in FAULTS[fault]:
        assert counts[expected[name]] > 0, f"the {name} fault never happened: {counts}"
