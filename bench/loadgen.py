"""A load generator for one relay (or several on one PostgreSQL): many stations, many mailboxes.

Each simulated station is one :class:`backchannel.station.relay_link.RelayLink`, the station's
own client for the relay protocol, so the wire is exactly a station's: a WebSocket per station,
mailboxes made with CREATE for fresh Ed25519 keys, every SUBSCRIBE and AUTH_SEND signed over
the connection's nonce, SENDs answered STORED after the relay's commit, DELIVERs acknowledged
with ACK. Only the payloads are not Olm envelopes: they are random bytes of the size of a real
one (``--payload``, default 1,081 bytes: a 200-character message fills the 1,024-byte padding
bucket, plus the 41-byte header and 16-byte tag), with a message number in the first 8 bytes.

One *case* is ``stations`` connections and ``mailboxes`` mailboxes on one backend (SQLite or a
throwaway PostgreSQL cluster, made as ``tests/support/postgres.py`` makes it); a station
subscribes to at most ``--per-station`` mailboxes (default 256, the relay's default limit per
connection), so 1 station has 256 mailboxes, 100 and 1,000 stations have 10,000. Mailbox ``j``
is received by station ``j % stations`` and sent to by station ``(j + 1) % stations`` (so with two
relay processes, every frame crosses from one to the other). A case runs:

1. setup: connect, CREATE, SUBSCRIBE and AUTH_SEND everything, then one warm-up frame per
   mailbox, every one awaited at its receiver (the relay's RSS is read after this);
2. latency: ``--latency-messages`` frames at ``--rate`` per second in all (open loop, paced),
   each to a random mailbox (seeded): p50/p99 from the SEND leaving the sender to the DELIVER
   at the receiver ("store to deliver": it includes the relay's commit), and of STORED;
3. throughput: ``--throughput-messages`` frames, at most ``--window`` unanswered per station:
   frames per second from the first SEND to the last DELIVER, with the latencies under load;
   the relay's CPU (seconds of CPU per second, from ``/proc``) and the generator's own.

The relays this starts are configured so that their per-client limits do not dominate
(:data:`LOAD_CONFIG`): every simulated station connects from 127.0.0.1, which the relay would
otherwise count as one client (64 connections, 1,024 subscriptions, 10,000 requests/s per
address). The generator raises its soft ``RLIMIT_NOFILE`` to the hard limit before starting
the relays (which inherit it), and refuses to start a case that would not fit.

Several relays: ``--relays 2`` starts two relay processes on the same PostgreSQL database and
connects station ``i`` to relay ``i % 2``; ``--url`` (repeatable) drives relays started
elsewhere instead (then no RSS or CPU is read). Until relays on one database notify each
other of new frames, a frame stored through one process is not pushed by the other: such a
case then reports the frames not delivered within ``--deadline`` (``lost``) instead of hanging.

Every phase is bounded in count and in time; everything started is stopped at the end.
Run: ``make bench-scale`` (1, 100 and 1,000 stations, 10,000 mailboxes, SQLite and PostgreSQL),
or e.g. ``python bench/loadgen.py --stations 100 --mailboxes 1000 --db sqlite``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from machine import cpu_seconds, machine_facts, rss_kib  # noqa: E402

from backchannel.errors import BackchannelError  # noqa: E402
from backchannel.station.relay_link import Delivery, RelayLink  # noqa: E402

from support.relays import RelayProcess, public, start_relay  # noqa: E402

#: The size of a real envelope of a 200-character message (41 + 1,024 + 16 bytes).
REAL_FRAME = 41 + 1024 + 16
#: Relay settings for a load test: per-address limits far above the load, since every
#: simulated station connects from the same address (the defaults are in relay/config.py).
LOAD_CONFIG: dict[str, Any] = {
    "max_connections": 8192,
    "max_connections_per_address": 8192,
    "max_creates_per_connection": 1_000_000,
    "max_creates_per_address": 1_000_000,
    "max_subscriptions_per_address": 1_000_000,
    "max_mailboxes": 1_000_000,
    "requests_per_second": 10_000_000.0,
    "request_burst": 10_000_000,
    "max_in_flight_bytes_per_address": 1024 * 1024 * 1024,
    "max_send_buffer_bytes_per_address": 1024 * 1024 * 1024,
    # A relay saturated by 10,000 SUBSCRIBEs (or a generator running 1,000 links in one event
    # loop) answers pings late; a keepalive timeout then cuts connections that are only busy.
    "ping_interval_seconds": 30.0,
    "ping_timeout_seconds": 60.0,
}
#: The generator's own keepalive, as loose as the relay's above.
LINK_PING = (30.0, 60.0)
#: A SEND that fails (its connection was cut) is sent again, as a station's delivery layer does
#: (SEND is idempotent at the relay); this many times at most.
SEND_ATTEMPTS = 5
RESULTS = ROOT / "bench" / "results" / "scale.json"
#: Mailboxes one station subscribes to at most: the relay's default limit per connection
#: (``max_subscriptions_per_connection``), kept, since one connection holding 10,000
#: subscriptions is not a station (and meets the relay's wake-all of its pumps: PERFORMANCE §5.2).
PER_STATION = 256
#: What ``make bench`` runs by default: small, to keep the whole of it well under 10 minutes.
DEFAULT_CASES = ((1, 1000), (100, 1000))


@dataclass
class Station:
    link: RelayLink
    #: mailboxes this station sends to: index -> send_id
    sends: dict[int, bytes] = field(default_factory=dict)
    inflight: asyncio.Semaphore | None = None


@dataclass
class Box:
    recv_id: bytes
    send_id: bytes
    receiver: int
    sender: int


@dataclass
class Tracker:
    """Send times by message number, and what arrived (a frame is counted once)."""

    sent: dict[int, float] = field(default_factory=dict)
    deliver: list[float] = field(default_factory=list)
    delivered: set[int] = field(default_factory=set)
    waiters: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def start(self, expected: int) -> None:
        self.deliver, self.expected = [], expected
        self.delivered.clear()
        self.all_in.clear()

    def arrived(self, number: int, now: float) -> None:
        if number in self.delivered:
            return  # (a redelivered copy)
        self.delivered.add(number)
        sent = self.sent.pop(number, None)
        if sent is not None:
            self.deliver.append(now - sent)
        if len(self.delivered) >= self.expected:
            self.all_in.set()


def raise_fd_limit(needed: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (children inherit it); ValueError if
    ``needed`` descriptors would still not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if needed > soft:
        raise ValueError(f"{needed} file descriptors needed, the limit is {soft}")
    return soft


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


@contextlib.contextmanager
def backend(db: str, tmp: Path, relays: int) -> Iterator[str | None]:
    """The database the relays share: None for SQLite (each relay its own file), or the URL of a
    new database on a throwaway PostgreSQL cluster, stopped afterwards."""
    if db == "sqlite":
        if relays > 1:
            raise ValueError("several relay processes need --db postgres (SQLite is one process's)")
        yield None
        return
    from support.postgres import PostgresCluster

    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster.new_database()
    finally:
        cluster.stop()


async def run_case(
    urls: list[str],
    stations: int,
    mailboxes: int,
    *,
    relay_pids: list[int],
    payload: int = REAL_FRAME,
    latency_messages: int = 500,
    rate: float = 200.0,
    throughput_messages: int = 5000,
    window: int = 32,
    deadline: float = 120.0,
    seed: int = 13,
) -> dict[str, Any]:
    rng = random.Random(seed)
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    tracker = Tracker()
    owners: dict[bytes, int] = {}
    result: dict[str, Any] = {"stations": stations, "mailboxes": mailboxes, "relays": len(urls)}
    fill = rng.randbytes(payload)  # (the message number in front makes each payload distinct)

    async def consume() -> None:
        while True:
            delivery = await queue.get()
            now = time.perf_counter()
            tracker.arrived(int.from_bytes(delivery.payload[:8]), now)
            link = delivery.link
            if link is not None:
                link.processed(delivery)
                link.ack_soon(delivery.recv_id, delivery.msg_id)

    t_setup = time.perf_counter()
    links = [
        RelayLink(
            urls[i % len(urls)],
            queue,
            request_timeout=60.0,
            ping_interval=LINK_PING[0],
            ping_timeout=LINK_PING[1],
        )
        for i in range(stations)
    ]
    retries = 0
    nodes = [Station(link, inflight=asyncio.Semaphore(window)) for link in links]
    consumer = asyncio.create_task(consume())
    try:
        for link in links:
            await link.start()
        await asyncio.gather(*(link.wait_connected(deadline) for link in links))
        boxes: list[Box] = []
        for start in range(0, mailboxes, 500):  # CREATE, SUBSCRIBE, AUTH_SEND, 500 at a time
            part = range(start, min(start + 500, mailboxes))
            keys = [(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()) for _ in part]
            made = await asyncio.gather(
                *(
                    links[j % stations].create_mailbox(public(rk), public(sk))
                    for j, (rk, sk) in zip(part, keys, strict=True)
                )
            )
            for j, (rk, sk), (recv_id, send_id) in zip(part, keys, made, strict=True):
                box = Box(recv_id, send_id, j % stations, (j + 1) % stations)
                boxes.append(box)
                owners[recv_id] = box.receiver
                links[box.receiver].subscribe(recv_id, rk.sign)
                links[box.sender].add_sender(send_id, sk.sign)
                nodes[box.sender].sends[j] = send_id
        result["setup_connect_create_s"] = time.perf_counter() - t_setup
        counter = iter(range(1, 2**62))

        async def send(j: int, track: bool = True) -> float:
            """One frame to mailbox ``j``: the time until STORED."""
            box = boxes[j]
            node = nodes[box.sender]
            assert node.inflight is not None
            async with node.inflight:
                n = next(counter)
                data = n.to_bytes(8) + fill[8:]
                t0 = time.perf_counter()
                if track:
                    tracker.sent[n] = t0
                for attempt in range(SEND_ATTEMPTS):
                    try:
                        await node.link.send(box.send_id, data)
                        break
                    except BackchannelError:
                        if attempt == SEND_ATTEMPTS - 1:
                            raise
                        nonlocal retries
                        retries += 1
                        await node.link.wait_connected(deadline)
                return time.perf_counter() - t0

        async def wait_all(what: str) -> int:
            """Wait for every expected frame (bounded); how many did not come."""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline):
                    await tracker.all_in.wait()
            missing = tracker.expected - len(tracker.delivered)
            if missing:
                print(f"  {what}: {missing} frames not delivered within {deadline:g} s", file=sys.stderr)
            return missing

        # 1. warm-up: one frame per mailbox (the first SEND of each also proves AUTH_SEND)
        tracker.start(mailboxes)
        t0 = time.perf_counter()
        await asyncio.gather(*(send(j) for j in range(mailboxes)))
        result["warmup_lost"] = await wait_all("warm-up")
        result["warmup_s"] = time.perf_counter() - t0
        result["setup_s"] = time.perf_counter() - t_setup
        result["relay_rss_mib"] = sum(rss_kib(pid) for pid in relay_pids) / 1024

        # 2. latency: open loop at `rate`
        tracker.start(latency_messages)
        stored: list[float] = []
        tasks = []
        t0 = time.perf_counter()
        for i in range(latency_messages):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(rng.randrange(mailboxes))))
        stored = list(await asyncio.gather(*tasks))
        result["latency_lost"] = await wait_all("latency")
        result["p50_ms"] = percentile(tracker.deliver, 50) * 1000
        result["p99_ms"] = percentile(tracker.deliver, 99) * 1000
        result["stored_p50_ms"] = percentile(stored, 50) * 1000
        result["stored_p99_ms"] = percentile(stored, 99) * 1000

        # 3. throughput: every station keeps up to `window` SENDs unanswered
        tracker.start(throughput_messages)
        cpu0 = [cpu_seconds(pid) for pid in relay_pids]
        own0 = time.process_time()
        t0 = time.perf_counter()
        targets = [rng.randrange(mailboxes) for _ in range(throughput_messages)]
        await asyncio.gather(*(send(j) for j in targets))
        lost = await wait_all("throughput")
        elapsed = time.perf_counter() - t0
        result["throughput_lost"] = lost
        result["frames_per_s"] = (throughput_messages - lost) / elapsed
        result["load_p50_ms"] = percentile(tracker.deliver, 50) * 1000
        result["load_p99_ms"] = percentile(tracker.deliver, 99) * 1000
        relay_cpu = sum(cpu_seconds(pid) - c for pid, c in zip(relay_pids, cpu0, strict=True))
        result["relay_cpu_per_s"] = relay_cpu / elapsed if relay_pids else float("nan")
        result["loadgen_cpu_per_s"] = (time.process_time() - own0) / elapsed
        result["relay_rss_end_mib"] = sum(rss_kib(pid) for pid in relay_pids) / 1024
        result["relay_peak_rss_mib"] = sum(rss_kib(pid, "VmHWM") for pid in relay_pids) / 1024
        result["lost"] = result["warmup_lost"] + result["latency_lost"] + lost
        result["send_retries"] = retries
        return result
    finally:
        consumer.cancel()
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)


def measure(
    db: str,
    stations: int,
    mailboxes: int,
    relays: int = 1,
    urls: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One case on fresh relays (and a fresh database), or on ``urls`` if given."""
    raise_fd_limit(2 * stations + 256)  # (the generator's sockets and, inherited, the relay's)
    mailboxes = min(mailboxes, stations * int(options.pop("per_station", PER_STATION)))
    timeout = float(options.get("deadline", 120.0)) * 4 + 600
    if urls:
        result = asyncio.run(_bounded(run_case(urls, stations, mailboxes, relay_pids=[], **options), timeout))
        return {"db": db, **result}
    with tempfile.TemporaryDirectory(prefix="bc-loadgen-") as tmp, backend(db, Path(tmp), relays) as url:
        started: list[RelayProcess] = []
        try:
            for k in range(relays):
                started.append(start_relay(Path(tmp), LOAD_CONFIG, name=f"relay{k}", db=url))
            pids = [r.proc.pid for r in started if r.proc is not None]
            case = run_case([r.url for r in started], stations, mailboxes, relay_pids=pids, **options)
            result = asyncio.run(_bounded(case, timeout))
            result["relay_counters"] = [relay_counters(r.http_url) for r in started]
        finally:
            for relay in started:
                relay.stop()
    return {"db": db, **result}


def relay_counters(http_url: str) -> dict[str, float]:
    """The relay's /metrics samples that say what the load did (pacing, commits, pushes)."""
    import urllib.request

    wanted = ("rate_limited", "commits", "stored", "delivered", "redelivered", "catch_ups", "storage_stalls")
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(http_url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        short = name.removeprefix("backchannel_relay_").removesuffix("_total")
        if short in wanted:
            out[short] = float(value)
    return out


async def _bounded(coro: Any, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        result: dict[str, Any] = await coro
        return result


def default_scale_run() -> dict[str, Any]:
    """The small run ``make bench`` includes: SQLite, 1 and 100 stations, 1,000 mailboxes."""
    cases = [
        measure("sqlite", s, m, latency_messages=300, throughput_messages=3000, deadline=60.0)
        for s, m in DEFAULT_CASES
    ]
    return {"cases": cases}


def print_table(cases: list[dict[str, Any]]) -> None:
    print(
        f"\n  {'db':8s} {'relays':>6s} {'stations':>8s} {'mailboxes':>9s} {'p50 ms':>7s} {'p99 ms':>7s}"
        f" {'frames/s':>8s} {'load p50':>8s} {'RSS MiB':>7s} {'peak':>6s} {'CPU/s':>5s} {'gen CPU':>7s}"
        f" {'lost':>4s}"
    )
    for c in cases:
        print(
            f"  {c['db']:8s} {c['relays']:6d} {c['stations']:8d} {c['mailboxes']:9d} {c['p50_ms']:7.2f}"
            f" {c['p99_ms']:7.2f} {c['frames_per_s']:8.0f} {c['load_p50_ms']:8.1f} {c['relay_rss_mib']:7.0f}"
            f" {c['relay_peak_rss_mib']:6.0f} {c['relay_cpu_per_s']:5.2f} {c['loadgen_cpu_per_s']:7.2f}"
            f" {c['lost']:4d}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stations", default="1,100", help="comma-separated station counts")
    parser.add_argument("--mailboxes", type=int, default=1000, help="in all (at most --per-station each)")
    parser.add_argument("--per-station", type=int, default=PER_STATION, help="mailboxes per station at most")
    parser.add_argument("--db", default="sqlite", help="comma-separated: sqlite, postgres")
    parser.add_argument("--relays", type=int, default=1, help="relay processes on one PostgreSQL database")
    parser.add_argument("--url", action="append", default=[], help="drive this relay (repeatable)")
    parser.add_argument("--payload", type=int, default=REAL_FRAME, help="bytes per frame")
    parser.add_argument("--latency-messages", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0, help="frames/s in the latency phase")
    parser.add_argument("--throughput-messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=32, help="unanswered SENDs per station")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds to wait for deliveries")
    parser.add_argument("--runs", type=int, default=1, help="runs per case (medians reported)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile", type=Path, help="run the relays under cProfile, stats into this directory"
    )
    args = parser.parse_args()
    if args.profile is not None:
        from profile_line import profiled_processes

        args.profile.mkdir(parents=True, exist_ok=True)
        with profiled_processes(args.profile):
            _cases(args)
    else:
        _cases(args)


def _cases(args: argparse.Namespace) -> None:
    options = {
        "payload": args.payload,
        "latency_messages": args.latency_messages,
        "rate": args.rate,
        "throughput_messages": args.throughput_messages,
        "window": args.window,
        "deadline": args.deadline,
        "per_station": args.per_station,
    }
    cases = []
    started = time.monotonic()
    for db in args.db.split(","):
        for stations in (int(s) for s in args.stations.split(",")):
            runs = []
            for _ in range(args.runs):
                runs.append(measure(db, stations, args.mailboxes, args.relays, args.url or None, **options))
                print(json.dumps(runs[-1]), file=sys.stderr)
            cases.append(_median_case(runs))
    print_table(cases)
    out = {
        "cases": cases,
        "settings": {**options, "mailboxes": args.mailboxes, "relays": args.relays, "runs": args.runs},
        "relay_config": LOAD_CONFIG,
        "machine": machine_facts(tempfile.gettempdir()),
        "elapsed_s": time.monotonic() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten to {args.out} ({out['elapsed_s']:.0f} s)")


def _median_case(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    merged: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, float):
            merged[key] = statistics.median(r[key] for r in runs)
        else:
            merged[key] = value
    merged["runs"] = len(runs)
    return merged


if __name__ == "__main__":
    main()
