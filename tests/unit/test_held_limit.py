"""The other party cannot fill the station's disk with frames held ahead of a gap (THREAT_MODEL §3).

A peer that leaves a gap (or a relay that drops one frame) makes the receiver hold every later
frame until the gap fills. At most ``MAX_HELD`` are held per line; later ones are dropped
and counted ``held_limit``, and come again end to end once the gap is filled (PROTOCOL
§10.6), so the bound costs nothing but time. The limit is 10 000 in the product; the test
lowers it to keep the run short (the rule is the same code path).
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from backchannel.proto.engine import receiving

LIMIT = 4


def test_frames_held_ahead_of_a_gap_are_bounded_and_the_rest_come_again(
    station_pair: Any, support: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert receiving.MAX_HELD == 10_000  # what THREAT_MODEL §3 states
    monkeypatch.setattr(receiving, "MAX_HELD", LIMIT)  # (the rule lives in the engine)
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    seqs = [asyncio.run(a.send(station_pair.inviter_line, f"m{i}")).seq for i in range(LIMIT + 4)]
    frames = support.outbound(a, [(lid, s) for s in seqs])
    support.deliver(b, *frames[1:])  # everything but the first: a gap at its head
    with sqlite3.connect(b.home / "station.db") as db:
        held = db.execute("SELECT COUNT(*) FROM held").fetchone()[0]
    assert held == LIMIT
    assert b.counters().get("held_limit") == 3
    support.deliver(b, frames[0])  # the gap fills: the held frames follow it
    assert len(b.inbox()) == 1 + LIMIT
    support.deliver(b, *frames[1 + LIMIT :])  # what was dropped, sent again end to end
    assert sorted(m.text for m in b.inbox()) == sorted(f"m{i}" for i in range(LIMIT + 4))
