"""A line through a relay whose store is PostgreSQL (a real cluster), killed mid-stream.

The same guarantees as on SQLite: the relay answers *stored* only after PostgreSQL committed,
so a SIGKILL of the relay loses nothing; every message arrives exactly once, in order; acked
frames are deleted; and the database holds no plaintext and no station name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.postgres import PostgresCluster
from support.relays import start_relay
from support.stations import StationProcess, heads_equal, pair, wait_until

MESSAGES = 200


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {"relays": [], "stations": []}
    yield started
    for st in started["stations"]:
        st.stop()
    for relay in started["relays"]:
        relay.stop()


def test_a_relay_on_postgresql_killed_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, world: dict[str, Any], postgres_cluster: PostgresCluster
) -> None:
    url = postgres_cluster.new_database()
    relay = start_relay(tmp_path, db=url)
    world["relays"].append(relay)
    a, b = StationProcess(tmp_path, "washington"), StationProcess(tmp_path, "moscow")
    for st in (a, b):
        (st.home / "station.toml").write_text("[station]\nrelay_request_timeout = 2.0\n")
        st.start()
        world["stations"].append(st)
    a_line, b_line = pair(a, b, relay.url)

    texts = [f"secret order {i:04d}" for i in range(MESSAGES)]
    for i, text in enumerate(texts):
        if i == MESSAGES // 2:
            relay.kill()  # SIGKILL: only what PostgreSQL committed survives
            relay.restart()
        a.call("send", line=a_line, text=text)

    def inbox() -> list[str]:
        return [m["text"] for m in reversed(b.call("inbox", line=b_line, limit=10_000))]

    wait_until("every message through the restarted relay", lambda: len(inbox()) == MESSAGES, timeout=90)
    assert inbox() == texts  # once each, in order
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line))
    wait_until(
        "every delivered frame deleted from PostgreSQL",
        lambda: _rows(url, "SELECT COUNT(*) FROM messages")[0][0] == 0,
    )
    mailboxes = _rows(url, "SELECT recv_id, send_id, recv_key, send_key FROM mailboxes")
    assert len(mailboxes) == 2  # one inbound mailbox per station
    stored = b"".join(bytes(v) for row in mailboxes for v in row)
    for secret in (b"secret order", b"washington", b"moscow"):
        assert secret not in stored


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql.encode()).fetchall()
