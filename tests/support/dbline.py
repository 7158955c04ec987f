"""A line over several relays, a message stream both ways, and the checks of issue 14.

``DbLine`` starts two real stations paired over the given relay URLs (each frame goes to
every relay), streams ``messages`` texts each way while the caller injects a database fault,
and, once the caller says the fault has ended, measures how long the line takes to deliver
everything: 0 lost, 0 duplicated, 0 reordered, equal transcript heads, within a bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from support.stations import StationProcess, heads_equal, wait_until

#: Station settings that make a fault show quickly (as in tests/faults/test_line_under_faults.py).
STATION_TOML = "[station]\nrelay_request_timeout = 1.0\nlink_test_interval = 2.0\nretry_max_seconds = 1.0\n"


class DbLine:
    def __init__(self, tmp_path: Path, relay_urls: list[str], stations: list[StationProcess]) -> None:
        self.a, self.b = StationProcess(tmp_path, "alpha"), StationProcess(tmp_path, "bravo")
        for st in (self.a, self.b):
            (st.home / "station.toml").write_text(STATION_TOML)
            st.start()
            stations.append(st)
        text = self.a.call("invite", relay=relay_urls, name="bravo")["text"]
        self.b.call("accept", text=text, name="alpha")
        wait_until("the line", lambda: self.b.call("line", name="alpha")["state"] == "established")
        self.sent = 0

    def stream(self, messages: int, each: Callable[[int], None] | None = None, pause: float = 0.0) -> None:
        """Send ``messages`` texts each way; ``each(i)`` runs before the i-th pair (a fault's cue)."""
        for i in range(messages):
            if each is not None:
                each(i)
            self.a.call("send", line="bravo", text=f"a{self.sent + i:04d}")
            self.b.call("send", line="alpha", text=f"b{self.sent + i:04d}")
            if pause:
                time.sleep(pause)
        self.sent += messages

    def texts(self, station: StationProcess, line: str) -> list[str]:
        return [m["text"] for m in reversed(station.call("inbox", line=line, limit=100_000))]

    def settle(self, bound: float) -> float:
        """Wait until everything sent has arrived (at most ``bound`` s); check exactly once, in
        order, and equal transcripts. Returns the seconds it took (the recovery time)."""
        start = time.monotonic()
        n = self.sent
        wait_until(
            f"all {n} messages each way delivered within {bound:g} s of the fault's end",
            lambda: len(self.texts(self.b, "alpha")) >= n and len(self.texts(self.a, "bravo")) >= n,
            timeout=bound,
            interval=0.2,
        )
        took = time.monotonic() - start
        assert self.texts(self.b, "alpha") == [f"a{i:04d}" for i in range(n)]  # 0 lost/doubled/reordered
        assert self.texts(self.a, "bravo") == [f"b{i:04d}" for i in range(n)]
        wait_until("equal transcripts", lambda: heads_equal(self.a, "bravo", self.b, "alpha"), timeout=30)
        return took
