"""RelayLink and the relay under network faults injected by ``support.faultproxy``.

A real relay subprocess sits behind two fault proxies: a sender's RelayLink stores N frames
in a mailbox through one, and a receiver's RelayLink, subscribed through the other, acks
whatever it gets. Each fault (drop, delay, duplicate, reorder, cut, and all of them at once)
is injected in turn; the sender retries a send that failed or timed out. After the faults
are turned off, every frame must have arrived at least once and nothing else may have
(duplicates are allowed at this layer: stations drop them by sequence number), and the
relay must end with an empty mailbox. The seed is printed; ``BACKCHANNEL_FAULT_SEED=<seed>``
replays a run (up to process scheduling).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect

from backchannel.errors import BackchannelError, RelayRefused, TransportError
from backchannel.proto import frames
from backchannel.proto.frames import RelayErrorCode
from backchannel.station.relay_link import Delivery, RelayLink

from support.faultproxy import FaultProxy
from support.relays import RelayProcess, metrics, public, run

N = 300
#: Faults stay on at least this long, so that even a quick run meets them.
FAULT_PHASE = 2.0
#: The relay pushes an unacknowledged frame again after this long (a lost DELIVER).
REDELIVER = 0.5

# fault name -> (faults, the counter that proves the fault happened)
SCENARIOS: dict[str, tuple[dict[str, float], tuple[str, ...]]] = {
    "drop": ({"drop": 0.05}, ("dropped",)),
    "delay": ({"delay": 30.0}, ("delayed",)),
    "duplicate": ({"duplicate": 0.1}, ("duplicated",)),
    "reorder": ({"reorder": 0.1}, ("reordered",)),
    "cut": ({"cut": 2.0}, ("cuts",)),
    "all": (
        {"drop": 0.03, "delay": 10.0, "duplicate": 0.03, "reorder": 0.03, "cut": 1.0},
        ("dropped", "delayed", "duplicated", "reordered"),
    ),
}


# ---- helpers ---------------------------------------------------------------------------


@dataclass
class Mailbox:
    recv_id: bytes
    send_id: bytes
    recv_key: Ed25519PrivateKey
    send_key: Ed25519PrivateKey


async def new_mailbox(url: str) -> Mailbox:
    """A mailbox created over a direct, fault-free link."""
    link = RelayLink(url, asyncio.Queue(), request_timeout=5.0)
    await link.start()
    try:
        await link.wait_connected(5.0)
        recv_key, send_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        recv_id, send_id = await link.create_mailbox(public(recv_key), public(send_key))
        return Mailbox(recv_id, send_id, recv_key, send_key)
    finally:
        await link.close()


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what}") from None


@pytest.fixture
def fault_seed() -> int:
    value = int(os.environ.get("BACKCHANNEL_FAULT_SEED") or random.randrange(2**32))
    print(f"fault seed: BACKCHANNEL_FAULT_SEED={value}")
    return value


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
    """Start fault proxies; every one is stopped afterwards, whatever happened."""
    started: list[FaultProxy] = []

    def factory(upstream_port: int, faults: dict[str, float] | None = None, seed: int = 0) -> FaultProxy:
        proxy = FaultProxy(upstream_port, faults or {}, seed)
        started.append(proxy)
        proxy.start()
        return proxy

    yield factory
    for proxy in started:
        proxy.stop()


# ---- the proxy itself ------------------------------------------------------------------


def test_proxy_passes_http_and_frames_of_every_length_encoding_intact(
    relay_factory: Callable[..., RelayProcess], proxy_factory: Callable[..., FaultProxy]
) -> None:
    relay = relay_factory(config={"max_payload": 100_000})
    proxy = proxy_factory(relay.port, {"none": 0})
    with urllib.request.urlopen(proxy.url.replace("ws://", "http://") + "/health", timeout=5) as response:
        assert response.read() == b"ok\n"  # not an upgrade: plain bytes both ways
    # 7-bit, 16-bit and 64-bit payload lengths, in both directions (SEND and DELIVER).
    payloads = [b"", b"s" * 100, b"m" * 30_000, b"L" * 70_000]

    async def body() -> None:
        box = await new_mailbox(relay.url)
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        link = RelayLink(proxy.url, queue, request_timeout=5.0)
        await link.start()
        try:
            link.add_sender(box.send_id, box.send_key.sign)
            link.subscribe(box.recv_id, box.recv_key.sign)
            await link.wait_connected(5.0)
            for payload in payloads:
                msg_id = await link.send(box.send_id, payload)
                delivery = await asyncio.wait_for(queue.get(), 5)
                assert delivery == Delivery(box.recv_id, msg_id, payload)
                await link.ack(box.recv_id, msg_id)
            with pytest.raises(RelayRefused) as refused:
                await link.send(box.send_id, b"x" * 100_001)
            assert refused.value.relay_code == RelayErrorCode.TOO_LARGE
        finally:
            await link.close()
        # A text message passes as a text frame, and is refused by the relay as usual.
        async with connect(proxy.url, compression=None) as ws:
            welcome = await ws.recv()
            assert isinstance(welcome, bytes) and frames.decode(welcome).__class__ is frames.Welcome
            await ws.send("hello")
            reply = await ws.recv()
            assert isinstance(reply, bytes)
            error = frames.decode(reply)
            assert isinstance(error, frames.Error) and error.code == RelayErrorCode.MALFORMED

    run(body())
    counts = proxy.counters
    assert counts["frames_forwarded"] > 2 * len(payloads) and counts["connections"] >= 3
    assert counts["dropped"] == counts["duplicated"] == counts["reordered"] == counts["cuts"] == 0


def test_dropping_touches_only_data_frames(
    relay_process: RelayProcess, proxy_factory: Callable[..., FaultProxy]
) -> None:
    proxy = proxy_factory(relay_process.port, {"drop": 1.0})

    async def body() -> None:
        async with connect(proxy.url, compression=None, ping_interval=None) as ws:
            pong = await ws.ping()
            latency = await asyncio.wait_for(pong, 5)  # ping and pong are control frames: they pass
            assert latency >= 0
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)  # WELCOME is a data frame: dropped

    run(body())
    assert proxy.counters["dropped"] >= 1


def test_fault_settings_are_checked(relay_process: RelayProcess) -> None:
    with pytest.raises(ValueError, match="jitter"):
        FaultProxy(relay_process.port, {"jitter": 1.0}, 0)
    with pytest.raises(ValueError, match="drop"):
        FaultProxy(relay_process.port, {"drop": 1.5}, 0)
    with pytest.raises(ValueError, match="cut"):
        FaultProxy(relay_process.port, {"cut": -1}, 0)


# ---- RelayLink's recovery --------------------------------------------------------------


def test_link_fails_a_cut_request_fast_and_reconnects(
    relay_process: RelayProcess, proxy_factory: Callable[..., FaultProxy]
) -> None:
    proxy = proxy_factory(relay_process.port)

    async def body() -> None:
        box = await new_mailbox(relay_process.url)
        events: list[bool] = []
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        link = RelayLink(proxy.url, queue, request_timeout=10.0, on_connected=events.append)
        await link.start()
        try:
            link.add_sender(box.send_id, box.send_key.sign)
            link.subscribe(box.recv_id, box.recv_key.sign)
            await link.wait_connected(5.0)
            # A request whose reply never comes (the proxy swallows it), then the cut: the
            # request fails with TransportError at once, not after request_timeout.
            proxy.set_faults({"blackhole": 1})
            pending = asyncio.create_task(link.send(box.send_id, b"cut off"))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            assert await asyncio.to_thread(proxy.cut_all) == 1
            with pytest.raises(TransportError):
                await pending
            assert time.monotonic() - started < 2.0
            proxy.set_faults({})
            await link.wait_connected(5.0)
            msg_id = await link.send(box.send_id, b"after the cut")
            delivery = await asyncio.wait_for(queue.get(), 5)
            assert delivery.msg_id == msg_id
            assert events[:3] == [True, False, True]
        finally:
            await link.close()

    run(body())


def test_link_times_out_a_lost_reply_and_resubscribes_on_the_same_connection(
    relay_process: RelayProcess, proxy_factory: Callable[..., FaultProxy]
) -> None:
    proxy = proxy_factory(relay_process.port)

    async def body() -> None:
        box = await new_mailbox(relay_process.url)
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        link = RelayLink(proxy.url, queue, request_timeout=0.5)
        await link.start()
        try:
            link.add_sender(box.send_id, box.send_key.sign)
            await link.wait_connected(5.0)
            await link.send(box.send_id, b"waiting")
            # Every data frame lost: a request times out with TransportError...
            proxy.set_faults({"drop": 1.0})
            started = time.monotonic()
            with pytest.raises(TransportError, match="did not answer"):
                await link.ping()
            assert 0.4 < time.monotonic() - started < 2.0
            # ...and a SUBSCRIBE lost this way is tried again on the same connection.
            link.subscribe(box.recv_id, box.recv_key.sign)
            await asyncio.sleep(1.2)  # at least two attempts lost
            assert isinstance(link.registration_errors.get(box.recv_id), TransportError)
            proxy.set_faults({})
            delivery = await asyncio.wait_for(queue.get(), 5)
            assert delivery.payload == b"waiting"
            assert box.recv_id not in link.registration_errors
            assert link.connected
        finally:
            await link.close()

    run(body())
    assert proxy.counters["connections"] == 1  # no reconnect was needed
    assert proxy.counters["dropped"] >= 3


def test_both_ends_notice_a_silently_dead_connection(
    relay_factory: Callable[..., RelayProcess], proxy_factory: Callable[..., FaultProxy]
) -> None:
    relay = relay_factory(config={"ping_interval_seconds": 0.3, "ping_timeout_seconds": 0.3})
    proxy = proxy_factory(relay.port)

    async def body() -> None:
        box = await new_mailbox(relay.url)
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        # The relay's keepalive: a link that never pings itself is still dropped.
        link = RelayLink(proxy.url, queue, request_timeout=5.0, ping_interval=60.0)
        await link.start()
        try:
            link.subscribe(box.recv_id, box.recv_key.sign)
            await link.wait_connected(5.0)
            assert metrics(relay)["subscriptions"] == 1
            proxy.set_faults({"blackhole": 1})
            started = time.monotonic()
            await wait_for(lambda: metrics(relay)["subscriptions"] == 0, 5.0, "the relay drops the dead link")
            assert time.monotonic() - started < 2.0
        finally:
            await link.close()
        proxy.set_faults({})

        # The link's keepalive: a relay that never pings is noticed by the link.
        link = RelayLink(proxy.url, queue, request_timeout=5.0, ping_interval=0.3, ping_timeout=0.3)
        await link.start()
        try:
            await link.wait_connected(5.0)
            proxy.set_faults({"blackhole": 1})
            started = time.monotonic()
            await wait_for(lambda: not link.connected, 5.0, "the link notices the dead relay")
            assert time.monotonic() - started < 2.0
            proxy.set_faults({})
            await link.wait_connected(5.0)
        finally:
            await link.close()

    run(body())
    assert proxy.counters["blackholed"] > 0


# ---- N frames through faults -----------------------------------------------------------


async def exchange(
    relay: RelayProcess, send_proxy: FaultProxy, recv_proxy: FaultProxy, faults: dict[str, float]
) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    """Send N frames under ``faults``, then settle; returns (sent, received, stats)."""
    box = await new_mailbox(relay.url)
    stats = {"send_retries": 0, "ack_failures": 0}
    payloads = [b"frame %04d " % i + os.urandom(8).hex().encode() for i in range(N)]
    received: list[bytes] = []
    inbox: asyncio.Queue[Delivery] = asyncio.Queue()
    receiver = RelayLink(recv_proxy.url, inbox, request_timeout=1.0)
    sender = RelayLink(send_proxy.url, asyncio.Queue(), request_timeout=1.0)
    receiver.subscribe(box.recv_id, box.recv_key.sign)
    sender.add_sender(box.send_id, box.send_key.sign)
    acks: set[asyncio.Task[None]] = set()

    async def ack(delivery: Delivery) -> None:
        try:
            await receiver.ack(delivery.recv_id, delivery.msg_id)
        except BackchannelError:  # lost: the relay pushes the frame again, and we ack again
            stats["ack_failures"] += 1

    async def receive() -> None:
        while True:
            delivery = await inbox.get()
            received.append(delivery.payload)
            task = asyncio.create_task(ack(delivery))
            acks.add(task)
            task.add_done_callback(acks.discard)

    slots = asyncio.Semaphore(16)

    async def send(payload: bytes) -> None:
        async with slots:
            while True:
                try:
                    await sender.send(box.send_id, payload)
                    return
                except TransportError:  # cut, timed out or not connected: retry
                    stats["send_retries"] += 1
                    await asyncio.sleep(random.uniform(0.02, 0.1))

    send_proxy.set_faults(faults)
    recv_proxy.set_faults(faults)
    await receiver.start()
    await sender.start()
    consumer = asyncio.create_task(receive())
    try:
        started = time.monotonic()
        sends = []
        for payload in payloads:  # paced, so that the faults meet traffic all along
            sends.append(asyncio.create_task(send(payload)))
            await asyncio.sleep(FAULT_PHASE / N)
        async with asyncio.timeout(20):
            await asyncio.gather(*sends)
        await asyncio.sleep(max(0.0, started + FAULT_PHASE - time.monotonic()))

        send_proxy.set_faults({})
        recv_proxy.set_faults({})
        wanted = set(payloads)
        await wait_for(lambda: wanted <= set(received), 15, "every frame received after the faults")
        counts: dict[str, int] = {}

        def mailbox_empty() -> bool:
            counts.update(metrics(relay))
            return counts["acked"] >= N and counts["acked"] == counts["stored"]

        await wait_for(mailbox_empty, 10, "every stored frame acknowledged")
        stats.update({f"relay_{k}": v for k, v in counts.items()})
        return payloads, received, stats
    finally:
        consumer.cancel()
        for task in list(acks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await asyncio.gather(*acks, return_exceptions=True)
        await sender.close()
        await receiver.close()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_frame_arrives_through_faults(
    scenario: str,
    fault_seed: int,
    relay_factory: Callable[..., RelayProcess],
    proxy_factory: Callable[..., FaultProxy],
) -> None:
    faults, evidence = SCENARIOS[scenario]
    relay = relay_factory(config={"redeliver_seconds": REDELIVER})
    send_proxy = proxy_factory(relay.port, seed=fault_seed)
    recv_proxy = proxy_factory(relay.port, seed=fault_seed + 1)

    sent, received, stats = run(exchange(relay, send_proxy, recv_proxy, faults), timeout=50)

    where = f"seed {fault_seed}, faults {faults}, stats {stats}"
    assert set(received) == set(sent), where  # all of them, and nothing else
    assert len(received) >= N, where  # at least once each (copies are the station's to drop)
    proxies = (send_proxy.counters, recv_proxy.counters)
    for counter in evidence:
        assert sum(c[counter] for c in proxies) > 0, f"the fault never happened: {counter}; {where}"
