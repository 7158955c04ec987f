"""The benchmarks cannot rot: ``make bench``'s harness and the load generator run, tiny.

Both run as the operator runs them (``bench/bench_line.py``, ``bench/loadgen.py``, real relays
and stations on 127.0.0.1), with a handful of messages, and write their JSON; the test checks
the keys that ``docs/PERFORMANCE.md`` and the issue rely on exist and hold positive numbers.
No figure is held to a speed: timing is the benchmark's business, not a test's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from support.figures import figure

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, timeout: float = 120) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_bench_line_writes_line_and_baseline_figures(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    _run(
        "bench_line.py", "--runs", "1", "--warmup", "3", "--latency-messages", "5",
        "--throughput-messages", "20", "--chunk", "10", "--out", str(out),
    )  # fmt: skip
    result = json.loads(out.read_text())
    for key in ("line_p50_ms", "line_p99_ms", "line_msgs_per_s", "baseline_p50_ms", "baseline_msgs_per_s"):
        assert _positive(result[key]), (key, result[key])
    assert _positive(result["ratio_p50"]) and _positive(result["ratio_msgs_per_s"])
    assert len(result["line_runs"]) == len(result["baseline_runs"]) == 1
    assert result["machine"]["cores"] >= 1 and result["machine"]["git_commit"]
    figure("tiny line p50 (no bound: a benchmark, not a test)", result["line_p50_ms"], "ms")


def test_loadgen_runs_stations_on_one_relay_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    _run(
        "loadgen.py", "--stations", "3", "--mailboxes", "6", "--db", "sqlite",
        "--latency-messages", "10", "--rate", "100", "--throughput-messages", "30",
        "--deadline", "30", "--out", str(out),
    )  # fmt: skip
    cases = json.loads(out.read_text())["cases"]
    assert [c["stations"] for c in cases] == [3]
    for case in cases:
        assert case["mailboxes"] == 6 and case["lost"] == 0, case
        for key in ("p50_ms", "p99_ms", "frames_per_s", "relay_rss_mib", "relay_peak_rss_mib"):
            assert _positive(case[key]), (key, case[key])
        assert case["relay_cpu_per_s"] >= 0
    figure("tiny loadgen frames per second (no bound)", cases[-1]["frames_per_s"], "frames/s")
