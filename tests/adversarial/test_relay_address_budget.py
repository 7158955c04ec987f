"""Attack: many connections from one address, each under its own byte budget, never reading.

The per-connection send buffer (``max_send_buffer_bytes``) bounds what one connection can make
the relay queue; a client that opens many connections, subscribes on each to a full mailbox
and reads nothing would still hold connections x budget. The budget is also counted per
source address (``max_send_buffer_bytes_per_address``): the relay's queued bytes for the whole
address stay under it, plus at most one frame per connection.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from backchannel.proto import frames

from support.figures import figure
from support.relay_clients import RawClient, full_mailboxes, rss_mib
from support.relays import metrics, run, start_relay

CONNECTIONS = 6
FRAMES_EACH = 300
FRAME_SIZE = 32 * 1024  # 6 × 300 × 32 KiB ≈ 56 MiB waiting to be pushed
PER_CONNECTION = 4 * 1024 * 1024
PER_ADDRESS = 4 * 1024 * 1024
#: One frame on the wire: the payload plus the DELIVER header.
FRAME_ON_WIRE = FRAME_SIZE + 64


def _small_window_socket(url: str) -> socket.socket:
    """A connected socket with a tiny receive buffer, so the kernel absorbs little."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    return sock


def test_many_connections_from_one_address_share_one_send_budget(tmp_path: Path) -> None:
    relay = start_relay(
        tmp_path,
        {
            "max_mailbox_depth": FRAMES_EACH,
            "max_send_buffer_bytes": PER_CONNECTION,
            "max_send_buffer_bytes_per_address": PER_ADDRESS,
            "send_timeout_seconds": 120.0,  # no drop: the budget alone must hold
            "ping_interval_seconds": 120.0,
            "ping_timeout_seconds": 120.0,
        },
    )
    try:
        assert relay.proc is not None
        pid = relay.proc.pid

        async def attack() -> tuple[int, float, float]:
            boxes = await full_mailboxes(relay.url, CONNECTIONS, FRAMES_EACH, FRAME_SIZE)
            idle = rss_mib(pid)
            sinks = []
            for box in boxes:  # one connection per mailbox, each subscribes and reads nothing
                sink = await RawClient.open(relay.url, sock=_small_window_socket(relay.url), max_queue=1)
                sig = sink.sign(box.recv_key, frames.FrameType.SUBSCRIBE, box.recv_id)
                await sink.ws.send(frames.encode(frames.Subscribe(sink.rid(), box.recv_id, sig)))
                sinks.append(sink)
            # Wait until the relay's queue stops growing (bounded), keeping the peak.
            peak_buffered, peak_rss, last_change = 0, idle, time.monotonic()
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and time.monotonic() - last_change < 3.0:
                buffered = metrics(relay)["send_buffered_bytes"]
                peak_rss = max(peak_rss, rss_mib(pid))
                if buffered > peak_buffered:
                    peak_buffered, last_change = buffered, time.monotonic()
                await asyncio.sleep(0.1)
            for sink in sinks:
                sink.ws.transport.abort()
            return peak_buffered, idle, peak_rss

        peak_buffered, idle, peak_rss = run(attack(), timeout=180)
        figure("bytes the relay queued for one address's 6 non-reading connections", peak_buffered, "B")
        figure("relay RSS growth while they read nothing", peak_rss - idle, "MiB")
        bound = PER_ADDRESS + CONNECTIONS * FRAME_ON_WIRE
        assert peak_buffered > PER_ADDRESS // 2, "the attack never filled the relay's queue (vacuous)"
        assert peak_buffered <= bound, f"{peak_buffered} queued for one address, budget {bound}"
        assert metrics(relay)["slow_reader"] == 0  # held by the budget, not by dropping
    finally:
        relay.stop()
