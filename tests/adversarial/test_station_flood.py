"""A hostile relay floods a station with DELIVERs: it costs the relay its circuit, not the station.

Attack (issue 9): a relay on one circuit of a line answers normally, then pushes DELIVER frames
for the station's mailbox as fast as the socket takes them — replays of the line's genuine
frames and forged frames of the largest size. Before the fix the station's delivery queue had
no bound and acknowledgement tasks kept every payload for 10 s: gigabytes within seconds.

Defence held here: the station's peak RSS stays under 150 MiB through a 20 s flood, messages
keep arriving through the line's other (honest) circuit with p99 latency under 1 s, and the
flooding relay's circuit is marked down with an alarm naming it.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from backchannel.station.control import ControlClient

from support.figures import figure
from support.hostile_relay import HostileRelay
from support.relays import start_relay
from support.stations import StationProcess, wait_until

FLOOD_SECONDS = 20.0
RSS_LIMIT_MIB = 150.0


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


def test_a_hostile_relay_flooding_delivers_loses_its_circuit_and_the_station_stays_small(
    tmp_path: Path,
) -> None:
    honest = start_relay(tmp_path, name="honest")
    # Mailbox 0 on the hostile relay is alpha's (made at invite), mailbox 1 bravo's: flood bravo.
    hostile = HostileRelay(tmp_path / "hostile", flood_index=1, flood_seconds=FLOOD_SECONDS)
    stations: list[StationProcess] = []
    try:
        for name in ("alpha", "bravo"):
            st = StationProcess(tmp_path, name)
            # Short suspensions (5 s, doubling), so the relay floods again within the 20 s.
            (st.home / "station.toml").write_text(
                "[station]\nlink_test_interval = 2\nflood_suspend_seconds = 5\n"
            )
            st.start()
            stations.append(st)
        a, b = stations
        text = a.call("invite", relay=[honest.url, hostile.url], name="peer")["text"]
        b_line = b.call("accept", text=text, name="peer")["name"]
        wait_until("the line", lambda: b.call("line", name=b_line)["state"] == "established")
        a.call("send", line="peer", text="before the flood", wait="delivered", timeout=20)
        assert b.proc is not None
        pid = b.proc.pid
        rss_before = _status_kib(pid, "VmRSS") / 1024

        hostile.flood()
        started = time.time()
        sent = 0
        sampled = 0.0
        with ControlClient(a.home) as client:
            while time.time() - started < FLOOD_SECONDS:
                client.call("send", line="peer", text=f"during the flood {sent:04d}")
                sent += 1
                sampled = max(sampled, _status_kib(pid, "VmRSS") / 1024)
                if sampled > 2 * RSS_LIMIT_MIB:  # do not let a failing station eat the machine
                    hostile.stop()
                    b.kill()
                    raise AssertionError(f"the station grew past {sampled:.0f} MiB within the flood")
                time.sleep(0.1)
        wait_until(
            "every message sent during the flood delivered",
            lambda: b.call("line", name=b_line)["received"] == sent + 1,
            timeout=30,
        )
        peak_mib = _status_kib(pid, "VmHWM") / 1024
        stats = hostile.stats()

        inbox = [m for m in b.call("inbox", line=b_line, limit=10_000) if m["text"].startswith("during")]
        latencies = sorted(m["delivered_at"] - m["created_at"] for m in inbox)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        alarms = [x for x in b.call("alarms", include_cleared=True) if x["kind"] == "circuit_down"]
        counters = b.call("counters")

        figure("station RSS before the flood", rss_before, "MiB")
        figure("station peak RSS (VmHWM) through a 20 s DELIVER flood", peak_mib, "MiB")
        figure("flood DELIVERs the hostile relay got onto the wire", stats.get("flood_delivers", 0), "frames")
        figure("hostile relay suspended", counters.get("relay_suspended", 0), "times")
        figure("p99 delivery latency on the honest circuit during the flood", p99, "s")
        figure("median delivery latency during the flood", statistics.median(latencies), "s")

        assert b.proc.poll() is None  # the station is alive
        assert stats.get("flood_delivers", 0) > 2000  # the flood happened
        assert peak_mib < RSS_LIMIT_MIB
        assert len(inbox) == sent
        assert p99 < 1.0
        assert counters.get("relay_suspended", 0) >= 1
        named = [x for x in alarms if x["subject"] == hostile.url and "flooded" in x["message"]]
        assert named, alarms  # the circuit went down with an alarm naming the relay
        assert hostile.url in named[0]["message"]
    finally:
        for st in stations:
            st.stop()
        hostile.stop()
        honest.stop()
