"""Benchmark one line through one relay on 127.0.0.1: latency, throughput, peak memory.

Three real processes (a relay and two stations), everything durable (SQLite WAL with
synchronous=FULL at both stations and at the relay), real cryptography. Driven through the
stations' control sockets, as the CLI is.

- latency: ``--latency-messages`` messages sent one at a time; for each, the time from the
  ``send`` call to the *delivered* receipt back at the sender (as seen by the client), and
  the station-internal part (queued-to-delivered timestamps of the sender's store).
- throughput: ``--throughput-messages`` messages pipelined on the control socket (``--chunk``
  requests written before the replies are read), then the time until the last *delivered*
  receipt is back (receipts are cumulative: the last one covers all).
- peak memory: VmHWM of each process at the end of the run.

Each figure is the median over ``--runs`` runs, each on fresh processes and databases.
Run: ``make bench`` (or ``python bench/bench_line.py --runs 3``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from backchannel.station.control import ControlClient  # noqa: E402

from support.relays import start_relay  # noqa: E402

RELAY_CONFIG: dict[str, object] = {}
from support.stations import StationProcess, pair, wait_until  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def one_run(latency_n: int, throughput_n: int, chunk: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bc-bench-") as tmp:
        base = Path(tmp)
        relay = start_relay(base, RELAY_CONFIG or None)
        a, b = StationProcess(base, "a"), StationProcess(base, "b")
        try:
            a.start()
            b.start()
            a_line, _ = pair(a, b, relay.url)
            client = ControlClient(a.home, timeout=120).connect()
            for i in range(50):  # warm up
                client.call("send", line=a_line, text=f"warm {i}", wait="delivered")
            rtts, internal = [], []
            for i in range(latency_n):
                text = f"latency {i:05d} " + "x" * 200
                t0 = time.perf_counter()
                m = client.call("send", line=a_line, text=text, wait="delivered")
                rtts.append(time.perf_counter() - t0)
                internal.append(m["delivered_at"] - m["created_at"])

            t0 = time.perf_counter()
            for start in range(0, throughput_n, chunk):
                calls = [
                    ("send", {"line": a_line, "text": f"bulk {i:06d} " + "y" * 200})
                    for i in range(start, min(start + chunk, throughput_n))
                ]
                for result in client.pipeline(calls):
                    assert not isinstance(result, Exception), result
            submitted = time.perf_counter() - t0
            last = client.call("send", line=a_line, text="last", wait="delivered", timeout=300)
            elapsed = time.perf_counter() - t0
            assert last["status"] in ("delivered", "acknowledged")
            total = throughput_n + 1
            wait_until(
                "the receiver to hold every message",
                lambda: b.call("line", name=_peer_line(b))["received"] >= total + latency_n + 50,
                timeout=120,
            )
            client.close()
            return {
                "latency_p50_ms": percentile(rtts, 50) * 1000,
                "latency_p90_ms": percentile(rtts, 90) * 1000,
                "latency_p99_ms": percentile(rtts, 99) * 1000,
                "internal_p50_ms": percentile(internal, 50) * 1000,
                "internal_p99_ms": percentile(internal, 99) * 1000,
                "throughput_msgs_per_s": total / elapsed,
                "submit_msgs_per_s": throughput_n / submitted,
                "peak_relay_mib": peak_kib(relay.proc.pid) / 1024 if relay.proc else 0,
                "peak_sender_mib": peak_kib(a.proc.pid) / 1024 if a.proc else 0,
                "peak_receiver_mib": peak_kib(b.proc.pid) / 1024 if b.proc else 0,
            }
        finally:
            a.stop()
            b.stop()
            relay.stop()


def _peer_line(station: StationProcess) -> str:
    return str(station.call("lines")[0]["name"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-messages", type=int, default=1000)
    parser.add_argument("--throughput-messages", type=int, default=10000)
    parser.add_argument("--chunk", type=int, default=1000, help="sends pipelined per control-socket write")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = []
    for run in range(args.runs):
        result = one_run(args.latency_messages, args.throughput_messages, args.chunk)
        runs.append(result)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()), file=sys.stderr)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    if args.json:
        print(json.dumps({"runs": runs, "median": medians}, indent=2))
        return
    print(
        f"\nMedians over {args.runs} runs ({args.latency_messages} latency messages, "
        f"{args.throughput_messages} pipelined):"
    )
    for key, value in medians.items():
        print(f"  {key:24s} {value:10.2f}")


if __name__ == "__main__":
    main()
