"""What cover traffic costs: CPU and bandwidth at 1, 10 and 100 frames/s, and the wait for a slot.

Three measurements, each figure the median over ``--runs`` runs (fresh processes and databases):

1. **One line over one relay** (real relay, two real stations, pairing as the CLI does), cover at
   each of ``--rates`` frames/s per circuit, nobody talking. After the line is up and cover flows,
   a timed window of ``--window`` seconds: CPU of each station and of the relay (% of one core, from
   ``/proc/<pid>/stat`` utime + stime over the window), and bytes/s on the wire (TCP payload through
   a counting ``WireTap`` between the stations and the relay: per station its own connection both
   ways; for the relay, all of them), and the SEND rate the relay received.
2. **A relay serving 100 lines at 1 frame/s per circuit.** The 200 stations are simulated by
   lightweight clients in this process (the real relay protocol over WebSocket, as
   ``tests/support/relay_clients.py`` speaks it): each CREATEs its mailbox, AUTH_SENDs to its
   peer's and SUBSCRIBEs its own, then SENDs a 4 096-byte random frame at slot times with gaps
   uniform in [0.5 T, 1.5 T] (the stations' schedule, PROTOCOL §10.7) and ACKs every DELIVER. Relay
   CPU over the window, and its bandwidth (WebSocket bytes both ways, framing included).
3. **The wait for a slot.** On a line with cover at 1 frame/s, ``--messages`` messages per
   precedence (ROUTINE, FLASH; ``cover_flash = "slot"``, the default), each sent at a random moment
   (seeded), timed from the ``send`` call to *relayed* (the relay answered STORED), in slot units
   (T = 1 s); then as many FLASHes after ``line cover --flash immediate``; and one run without cover
   for reference (the station's own path: commit, seal, SEND). Median and p99 over all runs.

Run: ``python bench/cover.py`` (part of ``make bench``); ``--quick`` for one short run of each.
Targets (docs/PERFORMANCE.md): a station under 5 % of one core at 1 frame/s; a relay serving 100
such lines under 50 %; a FLASH waits at most one slot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from machine import cpu_seconds, machine_facts  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from backchannel.proto import frames  # noqa: E402
from backchannel.proto.frames import FrameType  # noqa: E402

from support.relays import RelayProcess, public, start_relay  # noqa: E402
from support.stations import StationProcess, pair, wait_until  # noqa: E402
from support.wiretap import WireTap  # noqa: E402

SEED = 1963
FRAME = 4096
RESULTS = ROOT / "bench" / "results" / "cover.json"


def station_toml(rate: float, flash: str = "slot") -> str:
    return f'[station]\ncover_rate = {rate:g}\ncover_flash = "{flash}"\n'


@contextlib.contextmanager
def one_line(tmp: Path, rate: float) -> Iterator[tuple[RelayProcess, WireTap, list[StationProcess]]]:
    """A relay behind a counting tap and two stations paired over it, cover at ``rate``."""
    relay = start_relay(tmp / "relay")
    tap = WireTap(relay.port, record=False)
    tap.start()
    stations: list[StationProcess] = []
    try:
        for name in ("alpha", "bravo"):
            st = StationProcess(tmp, name, cover_rate=rate)
            (st.home / "station.toml").write_text(station_toml(rate))
            st.start()
            stations.append(st)
        pair(stations[0], stations[1], tap.url, inviter_line="peer")
        yield relay, tap, stations
    finally:
        for st in stations:
            st.stop()
        tap.stop()
        relay.stop()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# ---- 1. one line ----------------------------------------------------------------------------------


def line_run(rate: float, window: float) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="bc-cover-") as tmp,
        one_line(Path(tmp), rate) as (relay, tap, sts),
    ):
        # cover flows once the line is up; let each circuit run a few slots before the window opens
        time.sleep(max(1.0, 3.0 / rate))
        pids = {"alpha": sts[0].proc.pid, "bravo": sts[1].proc.pid, "relay": relay.proc.pid}  # type: ignore[union-attr]
        before_cpu = {k: cpu_seconds(p) for k, p in pids.items()}
        before = [list(c) for c in tap.counts]
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        after_cpu = {k: cpu_seconds(p) for k, p in pids.items()}
        after = [list(c) for c in tap.counts]
    moved = [
        [a - b for a, b in zip(now, then + [0] * (3 - len(then)), strict=True)]
        for now, then in zip(after, before + [[]] * (len(after) - len(before)), strict=True)
    ]
    active = [m for m in moved if m[0] + m[1] > 0]
    out = {f"{k} cpu %": 100 * (after_cpu[k] - before_cpu[k]) / elapsed for k in pids}
    out["station bytes/s (mean of its connection, both ways)"] = (
        statistics.mean(m[0] + m[1] for m in active) / elapsed if active else 0.0
    )
    out["relay bytes/s (all connections, both ways)"] = sum(m[0] + m[1] for m in moved) / elapsed
    out["relay messages in /s (SENDs, ACKs, PINGs)"] = sum(m[2] for m in moved) / elapsed
    out["connections active"] = len(active)
    return out


# ---- 2. a relay serving 100 lines -----------------------------------------------------------------


class SimStation:
    """One simulated station: its mailbox, its peer's, a cover schedule, ACKs for what arrives."""

    def __init__(self, ws: ClientConnection, nonce: bytes, rng: random.Random) -> None:
        self.ws, self.nonce, self.rng = ws, nonce, rng
        self.recv_key, self.send_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        self.recv_id = self.send_id = b""
        self.rid = 0
        self.sent = self.received = 0  # wire bytes (WebSocket framing included)
        self.replies: asyncio.Queue[frames.Frame] = asyncio.Queue()
        self.setting_up = True
        self.peer_send_id = b""

    @classmethod
    async def open(cls, url: str, rng: random.Random, source: str) -> SimStation:
        """Connect from loopback address ``source`` (a relay admits 64 connections per address)."""
        ws = await connect(url, compression=None, max_size=2**22, open_timeout=30, local_addr=(source, 0))
        welcome = frames.decode(await ws.recv(), 2**22)  # type: ignore[arg-type]
        assert isinstance(welcome, frames.Welcome), welcome
        return cls(ws, welcome.nonce, rng)

    async def send(self, frame: frames.Frame) -> None:
        data = frames.encode(frame)
        self.sent += len(data) + (8 if len(data) >= 126 else 6)  # masked client frame header
        await self.ws.send(data)

    def next_rid(self) -> int:
        self.rid += 1
        return self.rid

    async def request(self, frame: frames.Frame) -> frames.Frame:
        await self.send(frame)
        return await asyncio.wait_for(self.replies.get(), 30)

    async def reader(self) -> None:
        """ACK every DELIVER; during setup, hand replies to ``request``; afterwards drop them."""
        with contextlib.suppress(Exception):
            async for message in self.ws:
                assert isinstance(message, bytes)
                self.received += len(message) + (4 if len(message) >= 126 else 2)
                frame = frames.decode(message, 2**22)
                if isinstance(frame, frames.Deliver):
                    await self.send(frames.Ack(self.next_rid(), frame.recv_id, frame.msg_id))
                elif self.setting_up:
                    await self.replies.put(frame)

    async def create(self) -> None:
        reply = await self.request(
            frames.Create(self.next_rid(), public(self.recv_key), public(self.send_key))
        )
        assert isinstance(reply, frames.Created), reply
        self.recv_id, self.send_id = reply.recv_id, reply.send_id

    def sign(self, key: Ed25519PrivateKey, kind: FrameType, mailbox: bytes) -> bytes:
        return key.sign(frames.auth_message(self.nonce, kind, mailbox))

    async def join(self, peer: SimStation) -> None:
        self.peer_send_id = peer.send_id
        sig = self.sign(peer.send_key, FrameType.AUTH_SEND, peer.send_id)
        assert isinstance(await self.request(frames.AuthSend(self.next_rid(), peer.send_id, sig)), frames.Ok)
        sig = self.sign(self.recv_key, FrameType.SUBSCRIBE, self.recv_id)
        assert isinstance(await self.request(frames.Subscribe(self.next_rid(), self.recv_id, sig)), frames.Ok)
        self.setting_up = False

    async def cover(self, rate: float, until: float) -> None:
        period = 1 / rate
        at = time.monotonic() + self.rng.uniform(0, period)
        while at < until:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            payload = self.rng.randbytes(FRAME)
            await self.send(frames.Send(self.next_rid(), self.peer_send_id, payload))
            at += self.rng.uniform(0.5 * period, 1.5 * period)


async def relay_lines(url: str, pid: int, lines: int, rate: float, window: float) -> dict[str, float]:
    rng = random.Random(SEED)
    sims = [
        await SimStation.open(url, random.Random(rng.random()), f"127.0.0.{2 + n // 50}")
        for n in range(2 * lines)
    ]
    readers = [asyncio.create_task(s.reader()) for s in sims]
    for s in sims:
        await s.create()
    for a, b in zip(sims[0::2], sims[1::2], strict=True):
        await a.join(b)
        await b.join(a)
    warmup = 3.0
    until = time.monotonic() + warmup + window + 2.0
    senders = [asyncio.create_task(s.cover(rate, until)) for s in sims]
    await asyncio.sleep(warmup)
    cpu0, bytes0, t0 = cpu_seconds(pid), sum(s.sent + s.received for s in sims), time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - t0
    cpu1, bytes1 = cpu_seconds(pid), sum(s.sent + s.received for s in sims)
    for task in senders:
        task.cancel()
    for s in sims:
        await s.ws.close()
    for task in readers:
        task.cancel()
    return {
        "relay cpu %": 100 * (cpu1 - cpu0) / elapsed,
        "relay bytes/s (WebSocket, both ways)": (bytes1 - bytes0) / elapsed,
    }


def relay_run(lines: int, rate: float, window: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bc-cover-relay-") as tmp:
        relay = start_relay(Path(tmp))
        try:
            assert relay.proc is not None
            return asyncio.run(relay_lines(relay.url, relay.proc.pid, lines, rate, window))
        finally:
            relay.stop()


# ---- 3. the wait for a slot -----------------------------------------------------------------------


def slot_waits(rate: float, messages: int, seed: int) -> dict[str, list[float]]:
    """Seconds from ``send`` to *relayed*, per precedence, on a line with cover at ``rate``:
    ROUTINE and FLASH mixed (``cover_flash = "slot"``), then, with cover on, FLASH alone after
    ``line cover --flash immediate``."""
    rng = random.Random(seed)
    waits: dict[str, list[float]] = {"ROUTINE": [], "FLASH": [], "FLASH immediate": []}
    with (
        tempfile.TemporaryDirectory(prefix="bc-cover-wait-") as tmp,
        one_line(Path(tmp), rate) as (_, _, sts),
    ):
        alpha = sts[0]
        time.sleep(2.0)
        order = ["ROUTINE", "FLASH"] * messages
        rng.shuffle(order)
        if rate > 0:
            order += ["FLASH immediate"] * messages
        for n, kind in enumerate(order):
            if kind == "FLASH immediate" and not waits[kind]:
                alpha.call("line_cover", line="peer", flash="immediate")
            time.sleep(rng.uniform(0, 1.0))  # a random moment, not in step with the slots
            t0 = time.monotonic()
            precedence = kind.split()[0]
            alpha.call(
                "send", line="peer", text=f"wait {n}", precedence=precedence, wait="relayed", timeout=30
            )
            waits[kind].append(time.monotonic() - t0)
        wait_until("the last receipt", lambda: all(m["status"] != "queued" for m in alpha.call("outbox")))
    return waits


# ---- main -----------------------------------------------------------------------------------------


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", default="1,10,100")
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--messages", type=int, default=12, help="per precedence per run")
    parser.add_argument("--quick", action="store_true", help="one short run of each")
    parser.add_argument("--parts", default="1,2,3", help="which measurements (1 line, 2 relay, 3 wait)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.window, args.messages = 1, 5.0, 5
    started = time.monotonic()
    rates = [float(r) for r in args.rates.split(",")]
    result: dict[str, Any] = {"machine": machine_facts(tempfile.gettempdir()), "runs": args.runs}

    parts = set(args.parts.split(","))
    print(
        f"1. one line over one relay, cover at {args.rates} frames/s per circuit ({args.window:g} s windows)"
    )
    result["line"] = {}
    for rate in rates if "1" in parts else []:
        figures = medians([line_run(rate, args.window) for _ in range(args.runs)])
        result["line"][f"{rate:g}"] = figures
        print(f"  {rate:g} fps: " + ", ".join(f"{k} {v:,}" for k, v in figures.items()))

    print(f"2. one relay serving {args.lines} lines at 1 frame/s per circuit (simulated stations)")
    if "2" in parts:
        result["relay_lines"] = medians([relay_run(args.lines, 1.0, args.window) for _ in range(args.runs)])
        print("  " + ", ".join(f"{k} {v:,}" for k, v in result["relay_lines"].items()))

    print("3. send -> relayed, in slots (T = 1 s), cover at 1 frame/s (and off, for reference)")
    result["wait"] = {}
    for rate in (1.0, 0.0) if "3" in parts else ():
        pooled: dict[str, list[float]] = {"ROUTINE": [], "FLASH": [], "FLASH immediate": []}
        for run in range(args.runs if rate else 1):  # without cover: one run, for reference
            for prec, values in slot_waits(rate, args.messages, SEED + run).items():
                pooled[prec] += values
        for prec, values in pooled.items():
            if not values:
                continue
            slots = [v * 1.0 for v in values]  # T = 1 s at 1 frame/s: seconds are slots
            row = {
                "n": len(slots),
                "median slots": round(statistics.median(slots), 3),
                "p99 slots": round(percentile(slots, 99), 3),
                "max slots": round(max(slots), 3),
                "all": [round(v, 3) for v in sorted(slots)],
            }
            result["wait"][f"{prec} cover {rate:g}"] = row
            shown = ", ".join(f"{k} {v}" for k, v in row.items() if k != "all")
            print(f"  {prec} cover {rate:g} fps: {shown}")
    result["seconds"] = round(time.monotonic() - started)
    print(f"took {result['seconds']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
