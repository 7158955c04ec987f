"""A minimal store-and-forward relay: the floor the real line is compared with (``make bench``).

WebSocket in, one durable SQLite commit, WebSocket out; no cryptography, no signatures, no
limits, no acknowledgements, no expiry. The database is opened exactly as the real relay opens
its own (``backchannel.relay.storage.sqlite._open``: WAL, ``synchronous=FULL``), so a commit
costs the same fsync, and it commits in a worker thread with *group commit* (everything that
arrived while the previous commit ran goes into the next transaction), as the real relay's
``GroupCommitter`` does: one at a time this is one commit per message; pipelined, the
throughput is not held to one fsync per message, which would make the comparison unfair to
the baseline.

Wire (binary WebSocket messages, 16-byte box names):

- ``SUB`` box: this connection receives what is stored for ``box``; answered ``OK!``.
- ``PUT`` box payload: stored in one committed transaction, then answered ``STO`` seq (8 bytes,
  big-endian) and pushed to the box's subscriber as ``DLV`` box seq payload.

A client measures the same shape as the real line: the sender PUTs a message for the
receiver's box; the receiver, on its DLV, PUTs a small receipt for the sender's box; the
sender's latency runs from its PUT to the receipt's DLV (two relay commits, four WebSocket
hops, as on the line: message and *delivered* receipt each pass the relay once).

Run: ``python bench/baseline_relay.py --db /tmp/x.db`` prints ``baseline relay listening on
ws://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT. The driver is ``bench/bench_line.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sqlite3
import struct
import time
from concurrent.futures import ThreadPoolExecutor

from websockets.asyncio.server import ServerConnection, serve


def open_like_the_relay(path: str) -> sqlite3.Connection:
    """The real relay's own opener when it is where it was; else the same pragmas by hand."""
    try:
        from backchannel.relay.storage.sqlite import _open
    except ImportError:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db
    return _open(path)


BOX_LEN = 16
SEQ = struct.Struct(">Q")
READY_PREFIX = "baseline relay listening on "


class BaselineRelay:
    def __init__(self, db_path: str) -> None:
        self.db = open_like_the_relay(db_path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS messages"
            " (seq INTEGER PRIMARY KEY, box BLOB NOT NULL, payload BLOB NOT NULL, stored_at REAL NOT NULL)"
        )
        self.subs: dict[bytes, ServerConnection] = {}
        self.queue: list[tuple[ServerConnection, bytes]] = []
        self.wake = asyncio.Event()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="baseline-db")
        self.commits = 0

    def _commit(self, batch: list[tuple[ServerConnection, bytes]]) -> list[int]:
        seqs = []
        self.db.execute("BEGIN IMMEDIATE")
        now = time.time()
        for _, msg in batch:
            cur = self.db.execute(
                "INSERT INTO messages (box, payload, stored_at) VALUES (?, ?, ?)",
                (msg[3 : 3 + BOX_LEN], msg[3 + BOX_LEN :], now),
            )
            seqs.append(int(cur.lastrowid or 0))
        self.db.execute("COMMIT")
        return seqs

    async def committer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.queue = self.queue, []
            if not batch:
                continue
            seqs = await loop.run_in_executor(self.executor, self._commit, batch)
            self.commits += 1
            for (ws, msg), seq in zip(batch, seqs, strict=True):
                box, payload = msg[3 : 3 + BOX_LEN], msg[3 + BOX_LEN :]
                tag = SEQ.pack(seq)
                sub = self.subs.get(box)
                with contextlib.suppress(Exception):  # a gone sender must not stop the relay
                    await ws.send(b"STO" + tag)
                if sub is not None:
                    try:
                        await sub.send(b"DLV" + box + tag + payload)
                    except Exception:
                        self.subs.pop(box, None)

    async def handle(self, ws: ServerConnection) -> None:
        async for msg in ws:
            if not isinstance(msg, bytes):
                continue
            kind = msg[:3]
            if kind == b"PUT" and len(msg) >= 3 + BOX_LEN:
                self.queue.append((ws, msg))
                self.wake.set()
            elif kind == b"SUB" and len(msg) == 3 + BOX_LEN:
                self.subs[msg[3:]] = ws
                await ws.send(b"OK!")


async def serve_until_stopped(db_path: str, port: int) -> None:
    relay = BaselineRelay(db_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    committer = asyncio.create_task(relay.committer())
    async with serve(relay.handle, "127.0.0.1", port, compression=None, max_size=2**22) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"{READY_PREFIX}ws://127.0.0.1:{bound}", flush=True)
        await stop.wait()
    committer.cancel()
    relay.executor.shutdown(wait=True)
    relay.db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True, help="SQLite file (created)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve_until_stopped(args.db, args.port))


if __name__ == "__main__":
    main()
