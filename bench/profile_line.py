"""Where the time of one line goes: the latency run of ``bench_line.py`` with every process
profiled (``bench/profiled.py``), and the fsyncs of each process counted (``strace -c``).

The relay and both stations are started under cProfile (all threads, wall-clock time), the
same warm-up and one-at-a-time ``send ... wait=delivered`` as ``make bench`` run, the
processes are stopped (they write their stats), and for each process the functions that
matter on the critical path are printed as milliseconds per message: SQLite statements
(commits and their fsyncs included), Olm, signatures, encodings, WebSocket and control-socket
I/O. Then a second, unprofiled run counts each process's ``fsync``/``fdatasync`` calls per
message with ``strace -f -c`` attached (strace slows the processes down, so this run's
latency is not reported). The write-up is ``docs/PERFORMANCE.md``.

Run: ``python bench/profile_line.py --messages 300`` (writes ``bench/results/profile/*.prof``).
"""

from __future__ import annotations

import argparse
import contextlib
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_line import percentile  # noqa: E402

from backchannel.station.control import ControlClient  # noqa: E402

from support.relays import start_relay  # noqa: E402
from support.stations import StationProcess, pair  # noqa: E402

OUT = ROOT / "bench" / "results" / "profile"
#: A row of ``strace -c`` for fsync or fdatasync: % time, seconds, usecs/call, calls, [errors].
SYNC_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync", re.M)
PROFILED = str(ROOT / "bench" / "profiled.py")

#: Rows of the table: a label and a test on pstats' (file, line, function) key.
GROUPS: list[tuple[str, Callable[[str, str], bool]]] = [
    (
        "sqlite3 execute/commit (incl. fsync)",
        lambda f, n: "sqlite3" in n and ("execute" in n or "commit" in n),
    ),
    ("Olm encrypt (vodozemac)", lambda f, n: "encrypt" in n and "Session" in n),
    ("Olm decrypt (vodozemac)", lambda f, n: "decrypt" in n and "Session" in n),
    (
        "AEAD seal/open (envelope)",
        lambda f, n: f.endswith("primitives.py") and n in ("aead_seal", "aead_open"),
    ),
    ("Ed25519 sign", lambda f, n: "sign" in n and "Ed25519PrivateKey" in n),
    ("Ed25519 verify", lambda f, n: "verify" in n and "Ed25519PublicKey" in n),
    (
        "frame codec (proto/frames.py)",
        lambda f, n: f.endswith("proto/frames.py") and n in ("encode", "decode"),
    ),
    ("cbor2 dumps/loads", lambda f, n: "cbor2" in n),
    ("JSON (control socket)", lambda f, n: f.endswith("json/__init__.py") and n in ("dumps", "loads")),
    ("WebSocket send_data", lambda f, n: f.endswith("connection.py") and n == "send_data"),
]


@contextlib.contextmanager
def profiled_processes(directory: Path) -> Iterator[None]:
    """Start the relay's and the stations' long-running processes under ``profiled.py``."""
    real = subprocess.Popen

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        argv = list(args)
        if len(argv) > 2 and argv[1] == "-m" and argv[2].startswith("backchannel"):
            long_running = argv[2] == "backchannel.relay" or ("station" in argv and "run" in argv)
            if long_running:
                name = (
                    "relay" if argv[2] == "backchannel.relay" else Path(argv[argv.index("--home") + 1]).name
                )
                argv = [argv[0], PROFILED, str(directory / f"{name}.prof"), *argv[1:]]
        return real(argv, *rest, **kwargs)

    subprocess.Popen = popen  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = real  # type: ignore[misc]


def line(base: Path, messages: int, warmup: int, strace: bool) -> dict[str, Any]:
    relay = start_relay(base)
    a, b = StationProcess(base, "a"), StationProcess(base, "b")
    tracers: list[subprocess.Popen[str]] = []
    try:
        a.start()
        b.start()
        a_line, _ = pair(a, b, relay.url)
        client = ControlClient(a.home, timeout=120).connect()
        for i in range(warmup):
            client.call("send", line=a_line, text=f"warm {i}", wait="delivered")
        pids = {"relay": relay.proc.pid, "a (sender)": a.proc.pid, "b (receiver)": b.proc.pid}  # type: ignore[union-attr]
        if strace:
            for name, pid in pids.items():
                tracers.append(
                    subprocess.Popen(
                        ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync",
                         "-o", str(base / f"{name[0]}.strace"), "-p", str(pid)],
                        stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            time.sleep(1.0)  # (attached to every thread)
        rtts = []
        for i in range(messages):
            t0 = time.perf_counter()
            client.call("send", line=a_line, text=f"latency {i:05d} " + "x" * 200, wait="delivered")
            rtts.append(time.perf_counter() - t0)
        client.close()
        fsyncs: dict[str, float] = {}
        for tracer, name in zip(tracers, pids if strace else [], strict=True):
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
            text = (base / f"{name[0]}.strace").read_text()
            calls = sum(
                int(m.group(1))
                for m in re.finditer(
                    r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync", text, re.M
                )
            )
            fsyncs[name] = calls / messages
        return {
            "p50_ms": percentile(rtts, 50) * 1000,
            "p99_ms": percentile(rtts, 99) * 1000,
            "fsyncs": fsyncs,
        }
    finally:
        for tracer in tracers:
            if tracer.poll() is None:
                tracer.kill()
        a.stop()
        b.stop()
        relay.stop()


def report(path: Path, messages: int, top: int) -> None:
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    print(f"\n== {path.stem}: ms per message (wall time, all threads; cumulative where nested) ==")
    for label, test in GROUPS:
        tot = sum(v[2] for (f, _, n), v in raw.items() if test(f, n))
        calls = sum(v[1] for (f, _, n), v in raw.items() if test(f, n))
        if calls:
            print(f"  {label:40s} {1000 * tot / messages:8.3f} ms  ({calls / messages:6.1f} calls/msg)")
    print(f"  -- top {top} by own time --")
    ranked = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (f, ln, n), v in ranked:
        where = f"{Path(f).name}:{ln}" if f != "~" else ""
        print(f"  {1000 * v[2] / messages:8.3f} ms {v[1] / messages:7.1f}/msg  {n} {where}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bc-profile-") as tmp:
        with profiled_processes(args.out):
            profiled = line(Path(tmp) / "profiled", args.messages, args.warmup, strace=False)
        traced = (
            line(Path(tmp) / "traced", args.messages, args.warmup, strace=True)
            if shutil.which("strace")
            else None
        )
    print(
        f"profiled run: p50 {profiled['p50_ms']:.2f} ms, p99 {profiled['p99_ms']:.2f} ms (slowed by cProfile)"
    )
    if traced is not None:
        print(
            "fsync/fdatasync calls per message: "
            + ", ".join(f"{k} {v:.2f}" for k, v in traced["fsyncs"].items())
        )
    for name in ("a", "relay", "b"):
        # (the station's and the relay's own warm-up messages are in the stats too)
        report(args.out / f"{name}.prof", args.messages + args.warmup, args.top)


if __name__ == "__main__":
    main()
