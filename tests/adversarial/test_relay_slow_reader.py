"""Attack: one unauthenticated client subscribes to its own full mailboxes and never reads.

Before issue 9 the relay queued every frame it pushed in an unbounded per-connection outbox,
so one client that filled a few mailboxes and subscribed to them without reading made the
relay hold every stored frame in memory (78 MB to 888 MB in 3 s), and kept the connection.
Now a connection has a bounded send buffer (``max_send_buffer_bytes``): pushes wait for room,
and a connection that takes no data for ``send_timeout_seconds`` is dropped.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from backchannel.proto import frames

from support.figures import figure
from support.relay_clients import RawClient, full_mailboxes, rss_mib, sample_peak
from support.relays import metrics, run, start_relay

MAILBOXES = 4
FRAMES_EACH = 500
FRAME_SIZE = 32 * 1024  # 4 × 500 × 32 KiB = 62.5 MiB waiting to be pushed
#: RSS the relay may gain over its idle level while the attack runs (the send buffer is 256 KiB).
GROWTH_BOUND_MIB = 40.0


def test_a_client_that_never_reads_is_bounded_and_dropped(tmp_path: Path) -> None:
    relay = start_relay(
        tmp_path,
        {
            "max_mailbox_depth": FRAMES_EACH,
            "max_send_buffer_bytes": 256 * 1024,
            "send_timeout_seconds": 2.0,
            # A client that answers pings but reads nothing else: keepalive must not be
            # what saves the relay.
            "ping_interval_seconds": 60.0,
            "ping_timeout_seconds": 60.0,
        },
    )
    try:
        assert relay.proc is not None
        pid = relay.proc.pid

        async def attack() -> tuple[float, float, float]:
            boxes = await full_mailboxes(relay.url, MAILBOXES, FRAMES_EACH, FRAME_SIZE)
            idle = rss_mib(pid)

            # max_queue=1: the client library stops reading the socket after one message.
            sink = await RawClient.open(relay.url, max_queue=1)
            assert sink.nonce is not None
            for box in boxes:  # subscribe to everything, read nothing
                sig = sink.sign(box.recv_key, frames.FrameType.SUBSCRIBE, box.recv_id)
                await sink.ws.send(frames.encode(frames.Subscribe(sink.rid(), box.recv_id, sig)))
            started = time.monotonic()
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_peak(lambda: rss_mib(pid), stop))
            try:
                async with asyncio.timeout(20):
                    while metrics(relay).get("slow_reader", 0) < 1:
                        await asyncio.sleep(0.1)
                dropped_after = time.monotonic() - started
                await asyncio.sleep(0.5)  # memory after the drop is part of the figure too
            finally:
                stop.set()
                peak = await sampler
                sink.ws.transport.abort()
            return idle, peak, dropped_after

        idle, peak, dropped_after = run(attack(), timeout=120)
        figure("relay RSS idle after filling", idle, "MiB")
        figure("relay peak RSS while the client never read", peak, "MiB")
        figure("slow reader dropped after", dropped_after, "s")
        assert peak - idle < GROWTH_BOUND_MIB, f"relay grew from {idle:.1f} to {peak:.1f} MiB"
        counts = metrics(relay)
        assert counts["slow_reader"] == 1
        assert counts["open_connections"] == 0
    finally:
        relay.stop()
