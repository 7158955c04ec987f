"""The peer cannot make the station connect anywhere it likes (in-band circuit changes, §9.2).

Attacks (issue 9): the peer adds a circuit naming a hostile relay; the peer adds then removes
20 circuits naming arbitrary URLs. Before the fix the station connected to whatever the peer
named, internal addresses included, and kept reconnecting to removed circuits forever.

Defence held here: a relay the peer proposes is added only by the station's relay policy —
refused (internal addresses, by default) or held for a local operator's approval — so no
connection is made to it; removed circuits close their links; connection attempts are bounded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.figures import figure
from support.hostile_peer import ConnectionCounter, bogus_add, remove, send_circuit_changes
from support.hostile_relay import HostileRelay
from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, wait_until


@pytest.fixture
def world() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for thing in reversed(started):
        thing.stop()


def station(tmp_path: Path, world: list[Any], name: str, config: str = "") -> StationProcess:
    st = StationProcess(tmp_path, name)
    (st.home / "station.toml").write_text(f"[station]\nlink_test_interval = 2\n{config}")
    st.start()
    world.append(st)
    return st


def pair(a: StationProcess, b: StationProcess, relays: list[RelayProcess]) -> None:
    text = a.call("invite", relay=[r.url for r in relays], name="peer")["text"]
    b.call("accept", text=text, name="peer")
    wait_until("the line", lambda: b.call("line", name="peer")["state"] == "established")
    a.call("send", line="peer", text="paired", wait="delivered", timeout=20)


def urls(st: StationProcess) -> set[str]:
    return {c["url"] for c in st.call("line", name="peer")["circuits"]}


def test_the_peer_adding_a_circuit_through_a_hostile_relay_makes_no_connection(
    tmp_path: Path, world: list[Any]
) -> None:
    relay = start_relay(tmp_path, name="honest")
    world.append(relay)
    hostile = HostileRelay(tmp_path / "hostile")  # never triggered: it only counts here
    world.append(hostile)
    a, b = station(tmp_path, world, "alpha"), station(tmp_path, world, "bravo")  # default policy
    pair(a, b, [relay])

    added = a.cli("circuit", "add", "peer", hostile.url)  # alpha's operator: its own choice
    assert added.returncode == 0, added.stderr
    wait_until("bravo to refuse", lambda: b.call("counters").get("circuit_refused_policy") == 1)
    wait_until("alpha to learn it was declined", lambda: a.call("counters").get("circuit_declined") == 1)
    # The hostile relay writes its counts every 0.2 s: wait until they show alpha's own mailbox.
    stats = wait_until("the relay's counts", lambda: (s := hostile.stats()).get("creates", 0) >= 1 and s)
    figure("mailboxes the station created on the relay the peer named", stats["creates"] - 1, "mailboxes")
    figure("connections to that relay (alpha's own included)", stats["connections"], "connections")
    assert stats["creates"] == 1  # alpha's own; bravo made none
    assert stats["connections"] == 1  # alpha's; bravo never connected
    assert urls(a) == urls(b) == {relay.url}
    a.call("send", line="peer", text="still fine", wait="delivered", timeout=20)


def test_a_held_proposal_survives_a_restart_then_is_approved_and_another_rejected(
    tmp_path: Path, world: list[Any]
) -> None:
    r1, r2, r3 = (start_relay(tmp_path, name=f"r{i}") for i in (1, 2, 3))
    world += [r1, r2, r3]
    a = station(tmp_path, world, "alpha")
    b = station(tmp_path, world, "bravo", "allow_private_relays = true\n")  # policy "ask" (default)
    pair(a, b, [r1])
    assert a.cli("circuit", "add", "peer", r2.url).returncode == 0

    def pending() -> list[dict[str, Any]]:
        result = b.cli("circuit", "pending", "--json")
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))

    held = wait_until("the proposal held", lambda: pending() or None)
    assert [p["url"] for p in held] == [r2.url]
    assert b.call("ping")["links"] == 1  # no connection to the proposed relay
    assert any(x["kind"] == "circuit_proposed" and x["subject"] == r2.url for x in b.call("alarms"))

    b.stop()
    b.start()
    assert [p["id"] for p in pending()] == [held[0]["id"]]  # kept across the restart
    approved = b.cli("circuit", "approve", held[0]["id"])
    assert approved.returncode == 0, approved.stderr
    wait_until("both stations on two circuits", lambda: urls(a) == urls(b) == {r1.url, r2.url})
    assert not [x for x in b.call("alarms") if x["kind"] == "circuit_proposed"]

    assert a.cli("circuit", "add", "peer", r3.url).returncode == 0
    other = wait_until("the second proposal", lambda: [p for p in pending() if p["url"] == r3.url] or None)
    rejected = b.cli("circuit", "reject", other[0]["id"], "--json")
    assert rejected.returncode == 0, rejected.stderr
    wait_until("alpha to learn it was declined", lambda: a.call("counters").get("circuit_declined") == 1)
    assert pending() == [] and urls(a) == urls(b) == {r1.url, r2.url}
    figure("relay links of the station with a proposal held", 1, "links")

    r1.kill()  # the approved circuit alone carries the line, both ways
    a.call("send", line="peer", text="over the approved circuit", wait="delivered", timeout=20)
    b.call("send", line="peer", text="back over it", wait="delivered", timeout=20)


def test_the_peer_adding_then_removing_20_circuits_connects_nowhere_unapproved_and_closes_links(
    tmp_path: Path, world: list[Any]
) -> None:
    relay = start_relay(tmp_path, name="honest")
    world.append(relay)
    counter = ConnectionCounter()
    world.append(counter)
    a, b = station(tmp_path, world, "alpha"), station(tmp_path, world, "bravo")
    pair(a, b, [relay])
    targets = [counter.url(f"c{i}") for i in range(20)]

    # Default policy: refused (internal addresses), nothing connected.
    a.stop()
    send_circuit_changes(a.home, "peer", [bogus_add(u, i) for i, u in enumerate(targets)])
    send_circuit_changes(a.home, "peer", [remove(u) for u in targets])
    a.start()
    wait_until("bravo to refuse all 20", lambda: b.call("counters").get("circuit_refused_policy") == 20)
    wait_until("the removals applied", lambda: b.call("counters").get("circuit_refused", 0) >= 20)
    figure("connection attempts to 20 unapproved relays", counter.attempts, "attempts")
    assert counter.attempts == 0
    assert b.call("ping")["links"] == 1

    # Even with 127.0.0.1 allowed by policy: at most 7 more circuits (8 per line), and removing
    # them closes their links, so the attempts stop.
    b.stop()
    (b.home / "station.toml").write_text('[station]\nlink_test_interval = 2\nrelay_policy = ["127.0.0.1"]\n')
    b.start()
    a.stop()
    send_circuit_changes(a.home, "peer", [bogus_add(u, 100 + i) for i, u in enumerate(targets)])
    a.start()
    wait_until("bravo to take 7", lambda: b.call("ping")["links"] == 8)
    assert b.call("counters").get("circuit_limit") == 13
    wait_until("bravo to try them", lambda: counter.attempts >= 7)
    a.stop()
    send_circuit_changes(a.home, "peer", [remove(u) for u in targets[:7]])
    a.start()
    wait_until("their links closed", lambda: b.call("ping")["links"] == 1)
    settled = counter.attempts
    time.sleep(3.0)  # an observation window longer than the longest reconnect backoff (2 s)
    figure("connection attempts to 7 allowed relays, in all", counter.attempts, "attempts")
    figure("connection attempts after their removal", counter.attempts - settled, "attempts")
    assert counter.attempts - settled == 0
    assert counter.attempts <= 7 * 20  # bounded: backoff while the circuits lasted
    b.call("send", line="peer", text="the line still works", wait="delivered", timeout=20)
