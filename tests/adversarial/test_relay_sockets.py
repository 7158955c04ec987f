"""Attacks below the relay protocol: TCP sockets that never finish the WebSocket handshake, and
a client that makes the relay write (PONGs) while it reads nothing.

Found on review of issue 9's relay limits. Connections were counted only once their WebSocket
handshake had finished, so a stranger could hold any number of sockets (and file descriptors)
that never did, each for ``handshake_timeout_seconds``, whatever ``max_connections`` and
``max_connections_per_address`` said. And the WebSocket layer answers every PING with a PONG
by itself, outside the relay's bounded send buffer: four connections sending PINGs and never
reading took a relay from 48 to 474 MiB in 12 s, and keepalive did not drop them.

Now every TCP socket counts against the limits from the moment it is accepted; beyond the
limits a few more get the named TOO_MANY_CONNECTIONS error, and the rest are closed at once.
A connection whose unsent bytes (PONGs included) pass ``max_send_buffer_bytes`` is dropped as
a slow reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from backchannel.proto import frames
from backchannel.proto.frames import RelayErrorCode
from backchannel.relay.server import REFUSAL_SLACK_PER_ADDRESS, REFUSAL_SLACK_TOTAL

from support.figures import figure
from support.relay_clients import (
    RawClient,
    closed_by_peer,
    masked_ping,
    rss_mib,
    sample_peak,
    socket_count,
    tcp_open,
    upgraded,
)
from support.relays import RelayProcess, metrics, run, start_relay

PER_ADDRESS = 5
TOTAL = 12
#: Seconds the relay has to close the sockets over its limits (well under the handshake timeout).
CLOSE_WITHIN = 5.0


def test_sockets_that_never_finish_the_handshake_count_against_the_limits(tmp_path: Path) -> None:
    relay = start_relay(
        tmp_path,
        {
            "max_connections_per_address": PER_ADDRESS,
            "max_connections": TOTAL,
            # Long enough that the handshake timeout cannot be what closes the sockets.
            "handshake_timeout_seconds": 60.0,
        },
    )
    try:
        assert relay.proc is not None
        pid = relay.proc.pid
        idle_sockets = socket_count(pid)

        async def attack() -> tuple[int, int, int]:
            # One address opens 40 sockets and sends half a request line on each, never more.
            one = [await tcp_open(relay.url, "127.0.0.2") for _ in range(40)]
            for _, writer in one:
                writer.write(b"GET / HTTP/1.1\r\n")
            closed = await asyncio.gather(*(closed_by_peer(r, CLOSE_WITHIN) for r, _ in one))
            held_one = socket_count(pid) - idle_sockets
            figure("unfinished handshakes from one address closed at once (of 40)", sum(closed))
            assert sum(closed) >= 40 - PER_ADDRESS - REFUSAL_SLACK_PER_ADDRESS
            # Another address is not shut out by the first.
            other = await RawClient.open(relay.url, local_addr=("127.0.0.3", 0))
            assert other.nonce is not None
            await other.close()
            # Many addresses, each under its own limit, together: the relay-wide limit holds.
            many = [await tcp_open(relay.url, f"127.0.1.{n}") for n in range(1, 13) for _ in range(4)]
            closed_many = await asyncio.gather(*(closed_by_peer(r, CLOSE_WITHIN) for r, _ in many))
            held_total = socket_count(pid) - idle_sockets
            for _, writer in one + many:
                writer.close()
            # Once the stranger lets go, everyone gets in again.
            await _until(lambda: _sockets(relay) <= 1)  # (the /metrics request is one)
            again = await RawClient.open(relay.url, local_addr=("127.0.0.4", 0))
            assert again.nonce is not None
            await again.close()
            assert sum(closed) + sum(closed_many) >= 40 + 48 - TOTAL - REFUSAL_SLACK_TOTAL
            return sum(closed), held_one, held_total

        closed, held_one, held_total = run(attack(), timeout=90)
        figure("sockets the relay held for one address", held_one)
        figure("sockets the relay held for 13 addresses (limit 12)", held_total)
        assert held_one <= PER_ADDRESS + REFUSAL_SLACK_PER_ADDRESS
        assert held_total <= TOTAL + REFUSAL_SLACK_TOTAL
        assert metrics(relay)["connection_limit"] >= closed
    finally:
        relay.stop()


def test_sockets_over_the_limit_still_learn_why(tmp_path: Path) -> None:
    """A station over its address's limit is told TOO_MANY_CONNECTIONS (a few at a time), not
    just cut, so its log says what happened."""
    relay = start_relay(tmp_path, {"max_connections_per_address": 2, "max_connections": 100})
    try:

        async def attack() -> frames.Frame:
            held = [await RawClient.open(relay.url) for _ in range(2)]
            try:
                refused = await RawClient.open(relay.url)
                await refused.close()
                return refused.first
            finally:
                for client in held:
                    await client.close()

        first = run(attack())
        assert isinstance(first, frames.Error) and first.code == RelayErrorCode.TOO_MANY_CONNECTIONS
    finally:
        relay.stop()


PING_SECONDS = 10.0
#: RSS the relay may gain while PINGs pour in (its send buffer is 256 KiB per connection).
GROWTH_BOUND_MIB = 40.0


def test_a_ping_flood_that_never_reads_is_dropped(tmp_path: Path) -> None:
    relay = start_relay(
        tmp_path,
        {
            "max_send_buffer_bytes": 256 * 1024,
            # Keepalive must not be what saves the relay (it took 20 s and 400 MiB before).
            "ping_interval_seconds": 60.0,
            "ping_timeout_seconds": 60.0,
        },
    )
    try:
        assert relay.proc is not None
        pid = relay.proc.pid

        async def flood(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
            chunk = masked_ping(b"p" * 125) * 2000
            started = time.monotonic()
            while not stop.is_set() and time.monotonic() - started < PING_SECONDS:
                writer.write(chunk)
                with contextlib.suppress(TimeoutError, OSError):
                    await asyncio.wait_for(writer.drain(), 1.0)

        async def attack() -> tuple[float, float, int, float]:
            idle = rss_mib(pid)
            conns = [await upgraded(relay.url) for _ in range(4)]
            stop, sampled = asyncio.Event(), asyncio.Event()
            sampler = asyncio.create_task(sample_peak(lambda: rss_mib(pid), sampled))
            floods = [asyncio.create_task(flood(w, stop)) for _, w in conns]
            started = time.monotonic()
            # The attacker reads nothing; it only notices when the relay has hung up.
            closed = await asyncio.gather(*(_hung_up(w, PING_SECONDS + 2) for _, w in conns))
            dropped_after = time.monotonic() - started
            stop.set()
            await asyncio.gather(*floods)
            sampled.set()
            peak = await sampler
            for _, writer in conns:
                writer.transport.abort()
            return idle, peak, sum(closed), dropped_after

        idle, peak, closed, dropped_after = run(attack(), timeout=60)
        figure("relay RSS before the PING flood", idle, "MiB")
        figure("relay peak RSS under the PING flood (4 connections)", peak, "MiB")
        figure("PING-flooding connections dropped after", dropped_after, "s")
        assert closed == 4, f"only {closed} of 4 flooding connections were dropped"
        assert peak - idle < GROWTH_BOUND_MIB, f"relay grew from {idle:.1f} to {peak:.1f} MiB"
        assert metrics(relay)["slow_reader"] == 4
    finally:
        relay.stop()


async def _hung_up(writer: asyncio.StreamWriter, timeout: float) -> bool:
    """Did the relay hang up within ``timeout``? The attacker reads nothing, so it learns it
    only when a write of its flood fails (the relay reset the connection)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if writer.transport.is_closing():
            return True
        await asyncio.sleep(0.05)
    return False


def _sockets(relay: RelayProcess) -> int:
    """The relay's socket gauge (a /metrics request over a full relay is refused too)."""
    try:
        return metrics(relay)["sockets"]
    except OSError:
        return 1 << 30


async def _until(predicate: object, timeout: float = 15.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)
