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

In the same invocation, each run also drives the *baseline* (``bench/baseline_relay.py``: a
minimal relay, WebSocket in, one durable SQLite commit opened as the real relay opens its own,
WebSocket out, no cryptography) with the same client shape: one message at a time from
``send`` to its *delivered* receipt (the receipt also passes the baseline relay once), then the
same number of messages pipelined in the same chunks. Its payloads have the sizes of the line's
envelopes (a 200-character message fills the 1,024-byte padding bucket: 1,081 bytes on the
wire; a receipt the 256-byte bucket: 313 bytes). The figures, the medians, their ratios, the
machine and the git commit are printed and written to ``bench/results/latest.json``
(``--out``). ``--scale`` adds the small default run of the load generator (``bench/loadgen.py``).

Run: ``make bench`` (or ``python bench/bench_line.py --runs 3``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from backchannel.station.control import ControlClient  # noqa: E402

from support.relays import start_relay  # noqa: E402

RELAY_CONFIG: dict[str, object] = {}
import baseline_relay  # noqa: E402
from machine import machine_facts  # noqa: E402

from support.stations import StationProcess, pair, wait_until  # noqa: E402

#: The line's envelope sizes on the wire (41-byte header + padding bucket + 16-byte tag).
MESSAGE_BYTES = 41 + 1024 + 16
RECEIPT_BYTES = 41 + 256 + 16
RESULTS = ROOT / "bench" / "results" / "latest.json"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def one_run(latency_n: int, throughput_n: int, chunk: int, warmup: int = 50) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bc-bench-") as tmp:
        base = Path(tmp)
        relay = start_relay(base, RELAY_CONFIG or None)
        a, b = StationProcess(base, "a"), StationProcess(base, "b")
        try:
            a.start()
            b.start()
            a_line, _ = pair(a, b, relay.url)
            client = ControlClient(a.home, timeout=120).connect()
            for i in range(warmup):
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
                lambda: b.call("line", name=_peer_line(b))["received"] >= total + latency_n + warmup,
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


def baseline_run(latency_n: int, throughput_n: int, chunk: int, warmup: int = 50) -> dict[str, float]:
    """The same client shape against ``bench/baseline_relay.py`` in its own process."""
    with tempfile.TemporaryDirectory(prefix="bc-baseline-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "baseline_relay.py"), "--db", str(Path(tmp) / "base.db")],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            line = proc.stdout.readline() if ready else ""
            if not line.startswith(baseline_relay.READY_PREFIX):
                raise RuntimeError(f"the baseline relay did not start: {line!r}")
            url = line[len(baseline_relay.READY_PREFIX) :].strip()
            result = asyncio.run(_drive_baseline(url, latency_n, throughput_n, chunk, warmup))
            result["peak_baseline_relay_mib"] = peak_kib(proc.pid) / 1024
            return result
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


async def _drive_baseline(
    url: str, latency_n: int, throughput_n: int, chunk: int, warmup: int
) -> dict[str, float]:
    from websockets.asyncio.client import connect

    to_b, to_a = b"B" * baseline_relay.BOX_LEN, b"A" * baseline_relay.BOX_LEN
    receipts: dict[int, asyncio.Future[float]] = {}
    oneway: list[float] = []
    sent_at: dict[int, float] = {}
    async with asyncio.timeout(600):
        a = await connect(url, compression=None, max_size=2**22)
        b = await connect(url, compression=None, max_size=2**22)
        for ws, box in ((a, to_a), (b, to_b)):
            await ws.send(b"SUB" + box)
            assert await ws.recv() == b"OK!"

        async def receiver() -> None:  # station b: a receipt for every message, as the line's
            async for msg in b:
                assert isinstance(msg, bytes)
                if msg[:3] != b"DLV":
                    continue
                n = int.from_bytes(msg[27:35])
                if n in sent_at:
                    oneway.append(time.perf_counter() - sent_at.pop(n))
                await b.send(b"PUT" + to_a + msg[27:35].ljust(RECEIPT_BYTES, b"r"))

        async def sender_inbox() -> None:  # station a: STO replies and the receipts
            async for msg in a:
                assert isinstance(msg, bytes)
                if msg[:3] == b"DLV":
                    n = int.from_bytes(msg[27:35])
                    future = receipts.pop(n, None)
                    if future is not None and not future.done():
                        future.set_result(time.perf_counter())

        tasks = [asyncio.create_task(receiver()), asyncio.create_task(sender_inbox())]
        loop = asyncio.get_running_loop()

        def put(n: int) -> bytes:
            return b"PUT" + to_b + n.to_bytes(8).ljust(MESSAGE_BYTES, b"x")

        async def one(n: int) -> float:
            receipts[n] = loop.create_future()
            t0 = time.perf_counter()
            sent_at[n] = t0
            await a.send(put(n))
            return await receipts[n] - t0

        for n in range(warmup):  # warm up, as the line
            await one(n)
        oneway.clear()
        rtts = [await one(1000 + n) for n in range(latency_n)]
        latency_oneway = list(oneway)
        t0 = time.perf_counter()
        base = 10_000_000
        last = None
        for start in range(0, throughput_n, chunk):
            for n in range(start, min(start + chunk, throughput_n)):
                if n == throughput_n - 1:
                    last = receipts[base + n] = loop.create_future()
                await a.send(put(base + n))
        assert last is not None
        await last
        elapsed = time.perf_counter() - t0
        for task in tasks:
            task.cancel()
        await a.close()
        await b.close()
    return {
        "latency_p50_ms": percentile(rtts, 50) * 1000,
        "latency_p90_ms": percentile(rtts, 90) * 1000,
        "latency_p99_ms": percentile(rtts, 99) * 1000,
        "oneway_p50_ms": percentile(latency_oneway, 50) * 1000,
        "throughput_msgs_per_s": throughput_n / elapsed,
    }


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
    parser.add_argument("--warmup", type=int, default=50, help="messages sent before measuring")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes (default %(default)s)")
    parser.add_argument("--scale", action="store_true", help="also the load generator's small default run")
    parser.add_argument("--json", action="store_true", help="also print the JSON on stdout")
    args = parser.parse_args()
    started = time.monotonic()
    line_runs: list[dict[str, float]] = []
    base_runs: list[dict[str, float]] = []
    for run in range(args.runs):
        line = one_run(args.latency_messages, args.throughput_messages, args.chunk, args.warmup)
        line_runs.append(line)
        print(f"run {run + 1} line: " + ", ".join(f"{k} {v:.2f}" for k, v in line.items()), file=sys.stderr)
        base = baseline_run(args.latency_messages, args.throughput_messages, args.chunk, args.warmup)
        base_runs.append(base)
        print(
            f"run {run + 1} baseline: " + ", ".join(f"{k} {v:.2f}" for k, v in base.items()), file=sys.stderr
        )
    line_med = {key: statistics.median(r[key] for r in line_runs) for key in line_runs[0]}
    base_med = {key: statistics.median(r[key] for r in base_runs) for key in base_runs[0]}
    result: dict[str, Any] = {
        "line_p50_ms": line_med["latency_p50_ms"],
        "line_p90_ms": line_med["latency_p90_ms"],
        "line_p99_ms": line_med["latency_p99_ms"],
        "line_msgs_per_s": line_med["throughput_msgs_per_s"],
        "baseline_p50_ms": base_med["latency_p50_ms"],
        "baseline_p99_ms": base_med["latency_p99_ms"],
        "baseline_msgs_per_s": base_med["throughput_msgs_per_s"],
        "ratio_p50": line_med["latency_p50_ms"] / base_med["latency_p50_ms"],
        "ratio_msgs_per_s": line_med["throughput_msgs_per_s"] / base_med["throughput_msgs_per_s"],
        "targets": {"line_p50_ms": 3.0, "line_p99_ms": 10.0, "line_msgs_per_s": 2500.0},
        "settings": {
            "runs": args.runs,
            "latency_messages": args.latency_messages,
            "throughput_messages": args.throughput_messages,
            "chunk": args.chunk,
            "warmup": args.warmup,
            "message_bytes": MESSAGE_BYTES,
            "receipt_bytes": RECEIPT_BYTES,
        },
        "line_median": line_med,
        "baseline_median": base_med,
        "line_runs": line_runs,
        "baseline_runs": base_runs,
        "machine": machine_facts(tempfile.gettempdir()),
    }
    if args.scale:
        import loadgen

        result["scale"] = loadgen.default_scale_run()
    result["elapsed_s"] = time.monotonic() - started
    print(
        f"\nMedians over {args.runs} runs ({args.latency_messages} one at a time, "
        f"{args.throughput_messages} pipelined):"
    )
    print(f"  {'':28s} {'line':>10s} {'baseline':>10s} {'ratio':>8s}")
    for label, key in (
        ("p50 send -> delivered (ms)", "latency_p50_ms"),
        ("p90 send -> delivered (ms)", "latency_p90_ms"),
        ("p99 send -> delivered (ms)", "latency_p99_ms"),
        ("pipelined (msg/s)", "throughput_msgs_per_s"),
    ):
        lv, bv = line_med[key], base_med[key]
        print(f"  {label:28s} {lv:10.2f} {bv:10.2f} {lv / bv:8.2f}")
    for key in (
        "internal_p50_ms",
        "internal_p99_ms",
        "peak_relay_mib",
        "peak_sender_mib",
        "peak_receiver_mib",
    ):
        print(f"  line {key:23s} {line_med[key]:10.2f}")
    print(f"  baseline one-way p50 (ms)    {base_med['oneway_p50_ms']:10.2f}")
    if "scale" in result:
        import loadgen

        loadgen.print_table(result["scale"]["cases"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.out} ({result['elapsed_s']:.0f} s)")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
