"""A hostile relay: speaks the real relay protocol and answers normally, then floods.

Run as a process (``HostileRelay`` starts it): ``python hostile_relay.py --port 0 --control DIR``.
It keeps mailboxes in memory and behaves like a relay (CREATE, AUTH_SEND, SUBSCRIBE, SEND,
ACK, PING; stored frames are pushed to subscribers) — without checking signatures, which a
hostile relay would not bother with either. When the file ``DIR/flood`` appears it floods
every subscription of the mailbox created ``--flood-index``-th (0-based, in creation order)
with DELIVER frames, as fast as the socket takes them, for ``--flood-seconds``: replays of the
frames stored for that mailbox (authentic copies, under fresh msg_ids), the same copies with one
bit flipped, and forged frames. Since issue 11 what it stores are opaque 4 096-byte circuit
frames (it cannot read or rewrite a line id or a sequence number any more), so its forgeries
are random frames of that very size, which pass every check a relay could make and fail only
the station's circuit key; meanwhile it leaves ACKs unanswered. It writes counters to
``DIR/stats.json`` every 0.2 s (connections, creates, delivers sent) and stops by itself after
``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from backchannel.proto import frames, wire


@dataclass
class Box:
    recv_id: bytes
    send_id: bytes
    stored: list[tuple[bytes, bytes]] = field(default_factory=list)  # (msg_id, payload)
    history: list[bytes] = field(default_factory=list)  # payloads seen, for replays
    subscribers: list[ServerConnection] = field(default_factory=list)


class Hostile:
    def __init__(self, control: Path, flood_index: int, flood_seconds: float, seed: int) -> None:
        self.control = control
        self.flood_index = flood_index
        self.flood_seconds = flood_seconds
        self.rng = random.Random(seed)
        self.boxes: list[Box] = []
        self.by_recv: dict[bytes, Box] = {}
        self.by_send: dict[bytes, Box] = {}
        self.stats = {"connections": 0, "creates": 0, "delivers": 0, "flood_delivers": 0, "flooding": 0}

    async def handle(self, ws: ServerConnection) -> None:
        self.stats["connections"] += 1
        await ws.send(frames.encode(frames.Welcome(os.urandom(frames.NONCE_LEN))))
        try:
            async for message in ws:
                if not isinstance(message, bytes):
                    continue
                try:
                    frame = frames.decode(message)
                except Exception:
                    continue
                await self.answer(ws, frame)
        except ConnectionClosed:
            pass
        finally:
            for box in self.boxes:
                if ws in box.subscribers:
                    box.subscribers.remove(ws)

    async def answer(self, ws: ServerConnection, frame: frames.Frame) -> None:
        if isinstance(frame, frames.Create):
            box: Box | None = Box(os.urandom(frames.ID_LEN), os.urandom(frames.ID_LEN))
            assert box is not None
            self.boxes.append(box)
            self.by_recv[box.recv_id], self.by_send[box.send_id] = box, box
            self.stats["creates"] += 1
            await ws.send(frames.encode(frames.Created(frame.request_id, box.recv_id, box.send_id)))
        elif isinstance(frame, frames.Subscribe):
            await ws.send(frames.encode(frames.Ok(frame.request_id)))
            box = self.by_recv.get(frame.recv_id)
            if box is not None:
                box.subscribers.append(ws)
                for msg_id, payload in list(box.stored):
                    await ws.send(frames.encode(frames.Deliver(box.recv_id, msg_id, payload)))
        elif isinstance(frame, frames.AuthSend | frames.Ack | frames.Ping):
            if isinstance(frame, frames.Ack) and self.stats["flooding"] == 1:
                return  # while flooding, ACKs go unanswered: a station that waits for them waits
            if isinstance(frame, frames.Ack):
                box = self.by_recv.get(frame.recv_id)
                if box is not None:
                    box.stored = [(m, p) for m, p in box.stored if m != frame.msg_id]
            await ws.send(frames.encode(frames.Ok(frame.request_id)))
        elif isinstance(frame, frames.Send):
            box = self.by_send.get(frame.send_id)
            msg_id = os.urandom(frames.ID_LEN)
            await ws.send(frames.encode(frames.Stored(frame.request_id, msg_id)))
            if box is not None:
                box.stored.append((msg_id, frame.payload))
                box.history = [*box.history[-63:], frame.payload]
                for sub in list(box.subscribers):
                    self.stats["delivers"] += 1
                    with contextlib.suppress(ConnectionClosed):
                        await sub.send(frames.encode(frames.Deliver(box.recv_id, msg_id, frame.payload)))

    async def flood(self) -> None:
        """Wait for the trigger file, then flood the chosen mailbox's subscribers."""
        while not (self.control / "flood").exists():
            await asyncio.sleep(0.05)
        self.stats["flooding"] = 1
        deadline = time.monotonic() + self.flood_seconds
        forged = bytes(self.rng.getrandbits(8) for _ in range(wire.FRAME_SIZE))
        n = 0
        while time.monotonic() < deadline:
            if len(self.boxes) <= self.flood_index or not self.boxes[self.flood_index].subscribers:
                await asyncio.sleep(0.05)
                continue
            box = self.boxes[self.flood_index]
            replays = box.history or [forged]
            n += 1
            if n % 2:
                payload = forged[:-8] + n.to_bytes(8, "big")
            elif n % 4:
                payload = replays[n % len(replays)]
            else:  # a genuine frame, corrupted
                replay = bytearray(replays[n % len(replays)])
                replay[n % len(replay)] ^= 0x01
                payload = bytes(replay)
            data = frames.encode(frames.Deliver(box.recv_id, os.urandom(frames.ID_LEN), payload))
            for sub in list(box.subscribers):
                try:
                    await sub.send(data)
                    self.stats["flood_delivers"] += 1
                except ConnectionClosed:
                    if sub in box.subscribers:
                        box.subscribers.remove(sub)
            await asyncio.sleep(0)  # let the relay accept and answer while it floods
        self.stats["flooding"] = 2

    async def write_stats(self) -> None:
        while True:
            tmp = self.control / "stats.tmp"
            tmp.write_text(json.dumps(self.stats))
            tmp.replace(self.control / "stats.json")
            await asyncio.sleep(0.2)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--flood-index", type=int, default=1)
    parser.add_argument("--flood-seconds", type=float, default=30.0)
    parser.add_argument("--lifetime", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    hostile = Hostile(args.control, args.flood_index, args.flood_seconds, args.seed)
    async with serve(
        hostile.handle, "127.0.0.1", args.port, compression=None, max_size=2**20, ping_interval=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"relay listening on ws://127.0.0.1:{port}", flush=True)
        tasks = [asyncio.create_task(hostile.flood()), asyncio.create_task(hostile.write_stats())]
        await asyncio.sleep(args.lifetime)
        for task in tasks:
            task.cancel()


class HostileRelay:
    """The hostile relay as a subprocess of the test; ``stop()`` always (it also dies by itself)."""

    def __init__(self, directory: Path, flood_index: int = 1, flood_seconds: float = 30.0) -> None:
        import subprocess

        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        stderr = open(directory / "stderr", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--control",
                str(directory),
                "--flood-index",
                str(flood_index),
                "--flood-seconds",
                str(flood_seconds),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stderr.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("relay listening on "):
            self.stop()
            raise RuntimeError(f"hostile relay did not start: {line!r} {(directory / 'stderr').read_text()}")
        self.url = line.split(" on ", 1)[1].strip()

    def flood(self) -> None:
        (self.directory / "flood").touch()

    def stats(self) -> dict[str, int]:
        path = self.directory / "stats.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
