"""Two relay processes on one PostgreSQL database, each killed during a 1,000-message stream.

The sender station is attached to relay process A and the receiver to relay process B (one
relay URL, a switchboard leading each station's connections to its own process: see
support/switchboard.py), so every message is stored through A and delivered through B, and
every receipt the other way. During the stream A is killed with SIGKILL and restarted, then
B (the order and the moments come from the printed seed). At the receiver: 0 lost, 0
duplicated, 0 reordered, and both transcripts end equal.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backchannel.errors import StationNotRunning, TransportError

from support.figures import figure
from support.postgres import PostgresCluster
from support.relays import metrics, start_relay
from support.stations import StationProcess, heads_equal, wait_until
from support.switchboard import Switchboard

MESSAGES = 1000
STATION_TOML = "[station]\nrelay_request_timeout = 1.0\nlink_test_interval = 2.0\nretry_max_seconds = 1.0\n"
RELAY = {"catch_up_interval_seconds": 1.0}


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {"stations": [], "relays": [], "switchboards": []}
    yield started
    for st in started["stations"]:
        st.stop()
    for board in started["switchboards"]:
        board.stop()
    for relay in started["relays"]:
        relay.stop()


def test_two_relay_processes_killed_mid_stream_lose_double_and_reorder_nothing(
    tmp_path: Path, world: dict[str, Any], postgres_cluster: PostgresCluster
) -> None:
    seed = int(os.environ.get("BACKCHANNEL_FAULT_SEED", str(random.randrange(2**32))))
    print(f"fault seed: BACKCHANNEL_FAULT_SEED={seed}")
    rng = random.Random(seed)
    url = postgres_cluster.new_database()
    relay_a = start_relay(tmp_path, RELAY, name="relay-a", db=url)
    world["relays"].append(relay_a)
    relay_b = start_relay(tmp_path, RELAY, name="relay-b", db=url)
    world["relays"].append(relay_b)
    sender, receiver = StationProcess(tmp_path, "sender"), StationProcess(tmp_path, "receiver")
    for st in (sender, receiver):
        (st.home / "station.toml").write_text(STATION_TOML)
        st.start()
        world["stations"].append(st)
    assert sender.proc is not None and receiver.proc is not None
    board = Switchboard({sender.proc.pid: lambda: relay_a.port, receiver.proc.pid: lambda: relay_b.port})
    world["switchboards"].append(board)
    text = sender.call("invite", relay=[board.url], name="receiver")["text"]
    receiver.call("accept", text=text, name="sender")
    wait_until("the line", lambda: receiver.call("line", name="sender")["state"] == "established")

    # Kill the sender's relay process in the first half, the receiver's in the second.
    kills = {rng.randrange(150, 450): relay_a, rng.randrange(550, 850): relay_b}
    accepted: list[str] = []
    ambiguous: list[str] = []
    started = time.monotonic()
    for i in range(MESSAGES):
        victim = kills.get(i)
        if victim is not None:
            victim.kill()  # SIGKILL: only what PostgreSQL committed survives
            victim.restart()  # (on its port: the switchboard reaches it again)
        text = f"m{i:06d}"
        try:
            sender.call("send", line="receiver", text=text)
            accepted.append(text)
        except (StationNotRunning, TransportError, OSError):
            ambiguous.append(text)
    sent_in = time.monotonic() - started

    def inbox() -> list[str]:
        return [m["text"] for m in reversed(receiver.call("inbox", line="sender", limit=1_000_000))]

    wait_until("every accepted message at the receiver", lambda: set(accepted) <= set(inbox()), timeout=120)
    drained = time.monotonic() - started
    texts = inbox()
    lost = len(set(accepted) - set(texts))
    duplicated = len(texts) - len(set(texts))
    reordered = sum(1 for x, y in itertools.pairwise(texts) if x > y)
    figure("messages through two relay processes, each SIGKILLed once", len(accepted), "messages")
    figure("lost / duplicated / reordered at the receiver", lost + duplicated + reordered, "messages")
    figure("1,000 messages sent and all delivered across two killed processes", round(drained, 1), "s")
    print(f"sent in {sent_in:.1f} s, delivered by {drained:.1f} s; kills before messages {sorted(kills)}")
    assert len(accepted) == MESSAGES and not ambiguous  # a station accepts while its relay is down
    assert (lost, duplicated, reordered) == (0, 0, 0)
    assert set(texts) <= set(accepted)
    wait_until("equal transcripts", lambda: heads_equal(sender, "receiver", receiver, "sender"), timeout=60)
    # Each station really used its own process: the frames crossed between them.
    assert board.connections[sender.proc.pid] >= 2 and board.connections[receiver.proc.pid] >= 2
    assert metrics(relay_b)["notifications_received"] > 0  # after its restart, from A
    assert metrics(relay_a)["notifications_received"] > 0  # the receiver's receipts, from B
