"""The store tells the metrics what a transaction did only once it committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.station.store import Committed, Store


def test_counts_reach_the_metrics_after_the_commit_and_never_from_a_rollback(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "station.db")
    told: list[tuple[bool, list[Committed]]] = []
    store.on_commit = lambda seconds, durable, events: told.append((durable, events))
    try:
        with pytest.raises(RuntimeError), store.transaction():
            store.open_alarm("a1", "circuit_down", None, "ws://r", "down", 1.0)
            raise RuntimeError("rolled back")
        assert told == []
        with store.transaction(durable=False):
            store.open_alarm("a2", "circuit_down", None, "ws://r", "down", 2.0)
            assert not store.open_alarm("a3", "circuit_down", None, "ws://r", "again", 3.0)
        assert told == [(False, [Committed("alarm", None, kind="circuit_down")])]
        with store.transaction():
            store.count("nothing_the_metrics_count")
        assert told[-1] == (True, [])
    finally:
        store.close()
