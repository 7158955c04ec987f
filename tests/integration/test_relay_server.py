"""The relay as a real subprocess, driven by RelayLink and by a raw WebSocket client."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect

from backchannel.errors import InvalidArgument, RelayRefused, TransportError
from backchannel.proto import frames
from backchannel.proto.frames import FrameType, RelayErrorCode
from backchannel.station.relay_link import Delivery, RelayLink

import support.relay_clients as hostile
from support.relays import RelayProcess, metrics, public, run


@dataclass
class Mailbox:
    recv_id: bytes
    send_id: bytes
    recv_key: Ed25519PrivateKey
    send_key: Ed25519PrivateKey


async def open_link(url: str, **kwargs: Any) -> tuple[RelayLink, asyncio.Queue[Delivery]]:
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    link = RelayLink(url, queue, request_timeout=5.0, **kwargs)
    await link.start()
    await link.wait_connected(5.0)
    return link, queue


async def new_mailbox(link: RelayLink) -> Mailbox:
    recv_key, send_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    recv_id, send_id = await link.create_mailbox(public(recv_key), public(send_key))
    return Mailbox(recv_id, send_id, recv_key, send_key)


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def take(queue: asyncio.Queue[Delivery], n: int, timeout: float = 10.0) -> list[Delivery]:
    async with asyncio.timeout(timeout):
        return [await queue.get() for _ in range(n)]


def binary(message: str | bytes) -> bytes:
    assert isinstance(message, bytes), "the relay sends only binary messages"
    return message


class RawClient:
    """Speaks the wire protocol by hand, to send what RelayLink never would."""

    def __init__(self, ws: ClientConnection, nonce: bytes) -> None:
        self.ws = ws
        self.nonce = nonce

    @classmethod
    async def open(cls, url: str) -> RawClient:
        ws = await connect(url, compression=None, max_size=2**22)
        welcome = frames.decode(binary(await ws.recv()))
        assert isinstance(welcome, frames.Welcome)
        return cls(ws, welcome.nonce)

    async def raw(self, data: bytes | str) -> frames.Frame:
        """Send one message; return the next frame that is not a DELIVER."""
        await self.ws.send(data)
        while True:
            frame = frames.decode(binary(await self.ws.recv()), 2**22)
            if not isinstance(frame, frames.Deliver):
                return frame

    async def request(self, frame: frames.Frame) -> frames.Frame:
        return await self.raw(frames.encode(frame))

    def sign(self, key: Ed25519PrivateKey, kind: FrameType, mailbox_id: bytes) -> bytes:
        return key.sign(frames.auth_message(self.nonce, kind, mailbox_id))

    async def close(self) -> None:
        await self.ws.close()


def error_code(frame: frames.Frame) -> int:
    assert isinstance(frame, frames.Error), frame
    assert frame.message  # every refusal says why
    return frame.code


async def with_link(url: str, body: Callable[[RelayLink, asyncio.Queue[Delivery]], Awaitable[None]]) -> None:
    link, queue = await open_link(url)
    try:
        await body(link, queue)
    finally:
        await link.close()


# ---- the happy path -------------------------------------------------------------------


def test_create_subscribe_send_deliver_ack(relay_process: RelayProcess) -> None:
    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        link.subscribe(box.recv_id, box.recv_key.sign)
        link.add_sender(box.send_id, box.send_key.sign)
        msg_id = await link.send(box.send_id, b"hello")
        assert len(msg_id) == 16
        assert await link.send(box.send_id, b"hello") == msg_id  # a retry stores nothing new
        (delivery,) = await take(queue, 1)
        assert delivery == Delivery(box.recv_id, msg_id, b"hello")
        await link.ack(box.recv_id, msg_id)
        await link.ack(box.recv_id, msg_id)  # idempotent
        assert await link.ping() >= 0

    run(with_link(relay_process.url, body))
    counts = metrics(relay_process)
    assert counts["stored"] == 1 and counts["duplicates"] == 1 and counts["acked"] == 1
    with urllib.request.urlopen(relay_process.http_url + "/health", timeout=5) as response:
        assert response.status == 200 and response.read() == b"ok\n"


def test_bad_signatures_are_refused_with_auth(relay_process: RelayProcess) -> None:
    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        stranger = Ed25519PrivateKey.generate()
        link.add_sender(box.send_id, stranger.sign)
        with pytest.raises(RelayRefused) as refused:
            await link.send(box.send_id, b"forged")
        assert refused.value.relay_code == RelayErrorCode.AUTH

        raw = await RawClient.open(relay_process.url)
        try:
            sig = raw.sign(stranger, FrameType.SUBSCRIBE, box.recv_id)
            assert error_code(await raw.request(frames.Subscribe(1, box.recv_id, sig))) == 3
            # A valid signature, but over another connection's nonce (a replay): refused.
            stale = box.recv_key.sign(frames.auth_message(b"\0" * 32, FrameType.SUBSCRIBE, box.recv_id))
            reply = await raw.request(frames.Subscribe(2, box.recv_id, stale))
            assert error_code(reply) == RelayErrorCode.AUTH
            # An unknown mailbox gets the same answer as a bad signature.
            sig = raw.sign(box.recv_key, FrameType.SUBSCRIBE, b"u" * 16)
            reply = await raw.request(frames.Subscribe(3, b"u" * 16, sig))
            assert error_code(reply) == RelayErrorCode.AUTH
            good = raw.sign(box.recv_key, FrameType.SUBSCRIBE, box.recv_id)
            assert await raw.request(frames.Subscribe(4, box.recv_id, good)) == frames.Ok(4)
        finally:
            await raw.close()

    run(with_link(relay_process.url, body))
    assert metrics(relay_process)["auth_failed"] == 4


def test_a_signer_that_returns_garbage_is_reported_not_sent(relay_process: RelayProcess) -> None:
    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        link.subscribe(box.recv_id, lambda message: b"short")
        link.add_sender(box.send_id, lambda message: b"short")
        with pytest.raises(InvalidArgument, match="bad signature"):
            await link.send(box.send_id, b"never sent")
        await wait_for(lambda: box.recv_id in link.registration_errors)
        assert isinstance(link.registration_errors[box.recv_id], InvalidArgument)
        assert await link.ping() >= 0  # the connection is unharmed

    run(with_link(relay_process.url, body))
    assert metrics(relay_process)["malformed"] == 0


def test_send_and_ack_need_the_capability_on_this_connection(
    relay_process: RelayProcess,
) -> None:
    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        raw = await RawClient.open(relay_process.url)
        try:
            reply = await raw.request(frames.Send(7, box.send_id, b"x"))
            assert reply.request_id == 7
            assert error_code(reply) == RelayErrorCode.NOT_AUTHORISED
            reply = await raw.request(frames.Ack(8, box.recv_id, b"m" * 16))
            assert error_code(reply) == RelayErrorCode.NOT_AUTHORISED
            # Proving the send key does not grant the receive side.
            sig = raw.sign(box.send_key, FrameType.AUTH_SEND, box.send_id)
            assert await raw.request(frames.AuthSend(9, box.send_id, sig)) == frames.Ok(9)
            assert isinstance(await raw.request(frames.Send(10, box.send_id, b"x")), frames.Stored)
            reply = await raw.request(frames.Ack(11, box.recv_id, b"m" * 16))
            assert error_code(reply) == RelayErrorCode.NOT_AUTHORISED
        finally:
            await raw.close()

    run(with_link(relay_process.url, body))


# ---- bad input ------------------------------------------------------------------------


def test_oversized_frame_is_refused_and_connections_keep_working(
    relay_process: RelayProcess,
) -> None:
    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        link.add_sender(box.send_id, box.send_key.sign)
        link.subscribe(box.recv_id, box.recv_key.sign)
        other, _ = await open_link(relay_process.url)
        try:
            with pytest.raises(RelayRefused) as refused:
                await link.send(box.send_id, b"x" * (frames.MAX_PAYLOAD + 1))
            assert refused.value.relay_code == RelayErrorCode.TOO_LARGE
            assert link.connected
            largest = b"y" * frames.MAX_PAYLOAD
            msg_id = await link.send(box.send_id, largest)
            (delivery,) = await take(queue, 1)
            assert delivery.msg_id == msg_id and delivery.payload == largest
            assert await other.ping() >= 0
        finally:
            await other.close()

    run(with_link(relay_process.url, body))
    assert metrics(relay_process)["too_large"] == 1


def test_garbage_gets_an_error_and_never_hurts_the_relay(relay_process: RelayProcess) -> None:
    async def body() -> None:
        bystander, _ = await open_link(relay_process.url)
        raw = await RawClient.open(relay_process.url)
        try:
            assert error_code(await raw.raw(b"\x01")) == RelayErrorCode.MALFORMED
            assert error_code(await raw.raw(b"")) == RelayErrorCode.MALFORMED
            assert error_code(await raw.raw(bytes([1, 0x77, 0, 0, 0, 5]))) == 1  # unknown type
            reply = await raw.raw(bytes([9, 6, 0, 0, 0, 5]))
            assert reply.request_id == 5
            assert error_code(reply) == RelayErrorCode.UNSUPPORTED_VERSION
            reply = await raw.raw(bytes([1, FrameType.PING, 0, 0, 0, 6]) + b"extra")
            assert reply.request_id == 6 and error_code(reply) == RelayErrorCode.MALFORMED
            assert error_code(await raw.raw("a text message")) == RelayErrorCode.MALFORMED
            # A frame type only relays send.
            reply = await raw.request(frames.Ok(12))
            assert error_code(reply) == RelayErrorCode.MALFORMED
            # Truncated CREATE (keys too short).
            reply = await raw.raw(bytes([1, FrameType.CREATE, 0, 0, 0, 13]) + b"k" * 40)
            assert reply.request_id == 13 and error_code(reply) == RelayErrorCode.MALFORMED
            assert await raw.request(frames.Ping(14)) == frames.Ok(14)
            assert await bystander.ping() >= 0
        finally:
            await raw.close()
            await bystander.close()

    run(body())
    counts = metrics(relay_process)
    assert counts["malformed"] >= 6 and counts["unsupported_version"] == 1


def test_enormous_message_closes_only_that_connection(relay_process: RelayProcess) -> None:
    async def body() -> None:
        bystander, _ = await open_link(relay_process.url)
        raw = await RawClient.open(relay_process.url)
        try:
            await raw.ws.send(b"\x01" * (2 * 1024 * 1024))
            with pytest.raises(Exception):  # noqa: B017 - the relay closes with 1009
                await raw.ws.recv()
            assert await bystander.ping() >= 0
            # The relay counts it once its side of the connection has wound down.
            await wait_for(lambda: metrics(relay_process)["too_large"] == 1)
        finally:
            await raw.close()
            await bystander.close()

    run(body())


# ---- durability and redelivery ---------------------------------------------------------


def test_stored_frame_survives_sigkill(relay_process: RelayProcess) -> None:
    async def store() -> Mailbox:
        link, _ = await open_link(relay_process.url)
        try:
            box = await new_mailbox(link)
            link.add_sender(box.send_id, box.send_key.sign)
            await link.send(box.send_id, b"survives")
            return box
        finally:
            await link.close()

    box = run(store())
    relay_process.kill()
    relay_process.restart()

    async def collect(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        link.subscribe(box.recv_id, box.recv_key.sign)
        (delivery,) = await take(queue, 1)
        assert delivery.payload == b"survives"

    run(with_link(relay_process.url, collect))


def test_unacked_frames_come_again_after_reconnect_and_acked_do_not(
    relay_process: RelayProcess,
) -> None:
    async def body() -> None:
        link, queue = await open_link(relay_process.url)
        box = await new_mailbox(link)
        link.add_sender(box.send_id, box.send_key.sign)
        link.subscribe(box.recv_id, box.recv_key.sign)
        sent = [await link.send(box.send_id, b"m%d" % i) for i in range(5)]
        first = await take(queue, 5)
        assert [d.msg_id for d in first] == sent
        for delivery in first[:2]:
            await link.ack(box.recv_id, delivery.msg_id)
        await link.close()

        link2, queue2 = await open_link(relay_process.url)
        try:
            link2.subscribe(box.recv_id, box.recv_key.sign)
            again = await take(queue2, 3)
            assert [d.payload for d in again] == [b"m2", b"m3", b"m4"]
            link2.add_sender(box.send_id, box.send_key.sign)
            await link2.send(box.send_id, b"m5")
            (fresh,) = await take(queue2, 1)
            assert fresh.payload == b"m5"  # nothing else was queued before it
        finally:
            await link2.close()

    run(body())


def test_unacked_frames_are_pushed_again_on_the_same_connection(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(config={"redeliver_seconds": 0.4})

    async def body() -> None:
        events: list[bool] = []
        link, queue = await open_link(relay.url, on_connected=events.append)
        try:
            box = await new_mailbox(link)
            link.add_sender(box.send_id, box.send_key.sign)
            early = await link.send(box.send_id, b"stored before subscribing")  # pushed by the pump
            link.subscribe(box.recv_id, box.recv_key.sign)
            assert (await take(queue, 1))[0].msg_id == early
            await link.ack(box.recv_id, early)
            loop = asyncio.get_running_loop()
            first = await link.send(box.send_id, b"first")  # pushed straight after its commit
            second = await link.send(box.send_id, b"second")
            pushed_at = loop.time()
            got = await take(queue, 2)
            assert [d.msg_id for d in got] == [first, second]
            await link.ack(box.recv_id, second)  # "first" stays unacknowledged

            (again,) = await take(queue, 1, timeout=5)
            assert again == got[0]  # the same frame: same msg_id, same payload
            assert loop.time() - pushed_at >= 0.35
            (third,) = await take(queue, 1, timeout=5)  # and again, until acknowledged
            assert third == got[0]
            await link.ack(box.recv_id, first)
            await asyncio.sleep(1.0)
            assert queue.empty()
            assert events == [True]  # all on one connection: no reconnect, no re-SUBSCRIBE
        finally:
            await link.close()

    run(body())
    counts = metrics(relay)
    assert counts["delivered"] == 3 and counts["redelivered"] == 2
    assert counts["connections"] == 1 and counts["takeovers"] == 0


def test_second_subscription_takes_over(relay_process: RelayProcess) -> None:
    async def body() -> None:
        old, old_queue = await open_link(relay_process.url)
        new, new_queue = await open_link(relay_process.url)
        try:
            box = await new_mailbox(old)
            old.add_sender(box.send_id, box.send_key.sign)
            old.subscribe(box.recv_id, box.recv_key.sign)
            await old.send(box.send_id, b"one")
            assert (await take(old_queue, 1))[0].payload == b"one"
            new.subscribe(box.recv_id, box.recv_key.sign)
            assert (await take(new_queue, 1))[0].payload == b"one"  # unacked: pushed again
            await old.send(box.send_id, b"two")
            assert (await take(new_queue, 1))[0].payload == b"two"
            assert old_queue.empty()
        finally:
            await old.close()
            await new.close()

    run(body())
    assert metrics(relay_process)["takeovers"] == 1


def test_link_reconnects_by_itself_after_relay_restart(relay_process: RelayProcess) -> None:
    async def body() -> None:
        events: list[bool] = []
        link, queue = await open_link(relay_process.url, on_connected=events.append)
        try:
            box = await new_mailbox(link)
            link.add_sender(box.send_id, box.send_key.sign)
            link.subscribe(box.recv_id, box.recv_key.sign)
            await link.send(box.send_id, b"before")
            assert (await take(queue, 1))[0].payload == b"before"

            await asyncio.to_thread(relay_process.kill)
            await wait_for(lambda: not link.connected)
            with pytest.raises(TransportError):
                await link.send(box.send_id, b"while down")
            await asyncio.to_thread(relay_process.restart)
            await link.wait_connected(10.0)

            # Re-subscribed on its own: the unacked frame comes again, then new ones.
            assert (await take(queue, 1))[0].payload == b"before"
            await link.send(box.send_id, b"after")
            assert (await take(queue, 1))[0].payload == b"after"
            assert events[:3] == [True, False, True]
        finally:
            await link.close()

    run(body())


# ---- limits ----------------------------------------------------------------------------


def test_expiry_deletes_old_frames(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(config={"expiry_seconds": 0.3, "expiry_sweep_seconds": 0.1})

    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        link.add_sender(box.send_id, box.send_key.sign)
        for i in range(3):
            await link.send(box.send_id, b"old%d" % i)
        await wait_for(lambda: metrics(relay)["expired"] >= 3)
        link.subscribe(box.recv_id, box.recv_key.sign)
        await link.send(box.send_id, b"new")
        (first,) = await take(queue, 1)
        assert first.payload == b"new"

    run(with_link(relay.url, body))


def test_mailbox_full(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(config={"max_mailbox_depth": 3, "max_mailboxes": 2})

    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        link.add_sender(box.send_id, box.send_key.sign)
        ids = [await link.send(box.send_id, b"f%d" % i) for i in range(3)]
        with pytest.raises(RelayRefused) as refused:
            await link.send(box.send_id, b"one too many")
        assert refused.value.relay_code == RelayErrorCode.MAILBOX_FULL
        assert await link.send(box.send_id, b"f0") == ids[0]  # a retry is still answered
        link.subscribe(box.recv_id, box.recv_key.sign)
        delivered = await take(queue, 3)
        await link.ack(box.recv_id, delivered[0].msg_id)
        await link.send(box.send_id, b"room again")
        # The mailbox quota: two mailboxes, then QUOTA.
        await new_mailbox(link)
        with pytest.raises(RelayRefused) as refused:
            await new_mailbox(link)
        assert refused.value.relay_code == RelayErrorCode.QUOTA

    run(with_link(relay.url, body))
    counts = metrics(relay)
    assert counts["mailbox_full"] == 1 and counts["quota"] == 1


# ---- throughput ------------------------------------------------------------------------


def test_pipelined_sends_all_stored_and_delivered_once_in_order(
    relay_process: RelayProcess,
) -> None:
    count = 2000

    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        link.add_sender(box.send_id, box.send_key.sign)
        link.subscribe(box.recv_id, box.recv_key.sign)
        await link.ping()
        payloads = [b"frame %05d " % i + b"." * 200 for i in range(count)]
        # The first send proves the sender; then every send is written back to back.
        first = await link.send(box.send_id, payloads[0])
        rest = await asyncio.gather(*(link.send(box.send_id, p) for p in payloads[1:]))
        msg_ids = [first, *rest]
        assert len(set(msg_ids)) == count

        received: list[Delivery] = []
        acks: list[asyncio.Task[None]] = []
        async with asyncio.timeout(30):
            while len(received) < count:
                delivery = await queue.get()
                received.append(delivery)
                acks.append(asyncio.create_task(link.ack(delivery.recv_id, delivery.msg_id)))
        await asyncio.gather(*acks)
        assert [d.payload for d in received] == payloads
        assert [d.msg_id for d in received] == msg_ids

    run(with_link(relay_process.url, body), timeout=60)
    counts = metrics(relay_process)
    assert counts["stored"] == count and counts["acked"] == count
    assert counts["delivered"] == count  # exactly once: nothing pushed twice
    assert counts["commits"] < count  # group commit batched the work


# ---- /metrics kept private ---------------------------------------------------------------


def http_get(url: str, token: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_can_require_a_token(relay_factory: Callable[..., RelayProcess]) -> None:
    token = "metrics-token-0123456789"
    relay = relay_factory(config={"metrics_token": token})
    status, _ = http_get(relay.http_url + "/metrics")
    assert status == 401
    assert http_get(relay.http_url + "/metrics", "wrong-token-0123456789")[0] == 401
    status, text = http_get(relay.http_url + "/metrics", token)
    assert status == 200 and "backchannel_relay_connections_total" in text
    assert http_get(relay.http_url + "/health") == (200, "ok\n")  # health stays open
    assert token not in relay.stderr_text()


def test_metrics_can_be_served_on_a_separate_address(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(config={"metrics_listen": "127.0.0.2:0"})
    status, _ = http_get(relay.http_url + "/metrics")
    assert status == 404  # not on the relay's public port any more
    line = next(line for line in relay.stderr_text().splitlines() if "relay metrics on " in line)
    metrics_url = line.split("relay metrics on ", 1)[1].strip()
    assert metrics_url.startswith("http://127.0.0.2:")
    status, text = http_get(metrics_url)
    assert status == 200 and "backchannel_relay_open_connections 0.0" in text
    assert http_get(metrics_url.removesuffix("/metrics") + "/anything")[0] == 404


def test_request_rate_and_subscriptions_are_limited_per_client(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(
        config={
            "requests_per_second": 10.0,
            "request_burst": 200,
            "max_subscriptions_per_connection": 2,
            "max_subscriptions_per_address": 3,
        }
    )

    async def body() -> None:
        first, second = await hostile.RawClient.open(relay.url), await hostile.RawClient.open(relay.url)
        try:
            boxes = [await first.create() for _ in range(4)]
            assert not any(isinstance(box, frames.Error) for box in boxes)
            replies = [await first.subscribe(box) for box in boxes[:3]]  # type: ignore[arg-type]
            assert replies[:2] == [frames.Ok(5), frames.Ok(6)]
            assert error_code(replies[2]) == RelayErrorCode.CLIENT_LIMIT  # per connection
            again = await first.subscribe(boxes[0])  # type: ignore[arg-type]
            assert again == frames.Ok(8)  # (again: no new subscription)
            assert await second.subscribe(boxes[2]) == frames.Ok(1)  # type: ignore[arg-type]
            reply = await second.subscribe(boxes[3])  # type: ignore[arg-type]
            assert error_code(reply) == RelayErrorCode.CLIENT_LIMIT  # per address: 3 in all
            # Ten signed requests (20 each) emptied the bucket of 200: pings are paced at 10 per
            # second, every one answered, none refused.
            started = time.monotonic()
            pings = [await first.request(frames.Ping(first.rid()), timeout=30) for _ in range(10)]
            assert all(isinstance(p, frames.Ok) for p in pings), pings
            assert time.monotonic() - started >= 0.4  # slowed, not served at once
        finally:
            await first.close()
            await second.close()

    run(body())
    counts = metrics(relay)
    assert counts["subscription_limit"] == 2 and counts["rate_limited"] >= 1


# ---- DELETE (a rotated mailbox) --------------------------------------------------------


def test_delete_needs_the_subscription_and_leaves_the_mailbox_unknown(relay_process: RelayProcess) -> None:
    async def body(link: RelayLink, queue: asyncio.Queue[Delivery]) -> None:
        box = await new_mailbox(link)
        link.subscribe(box.recv_id, box.recv_key.sign)
        link.add_sender(box.send_id, box.send_key.sign)
        await link.send(box.send_id, b"never read")
        await take(queue, 1)
        raw = await RawClient.open(relay_process.url)
        try:
            # Holding the send key (or nothing) grants no DELETE: only a SUBSCRIBE on this connection.
            sig = raw.sign(box.send_key, FrameType.AUTH_SEND, box.send_id)
            assert await raw.request(frames.AuthSend(1, box.send_id, sig)) == frames.Ok(1)
            assert (
                error_code(await raw.request(frames.Delete(2, box.recv_id))) == RelayErrorCode.NOT_AUTHORISED
            )
            await link.delete_mailbox(box.recv_id)
            assert not link.receives(box.recv_id)
            # Afterwards the mailbox is unknown, as one that expired: AUTH for every use.
            reply = await raw.request(frames.Send(3, box.send_id, b"late"))
            assert error_code(reply) == RelayErrorCode.AUTH
            sig = raw.sign(box.send_key, FrameType.AUTH_SEND, box.send_id)
            assert error_code(await raw.request(frames.AuthSend(4, box.send_id, sig))) == RelayErrorCode.AUTH
            sig = raw.sign(box.recv_key, FrameType.SUBSCRIBE, box.recv_id)
            assert error_code(await raw.request(frames.Subscribe(5, box.recv_id, sig))) == RelayErrorCode.AUTH
        finally:
            await raw.close()

    run(with_link(relay_process.url, body))
    counts = metrics(relay_process)
    assert counts["mailboxes_deleted"] == 1 and counts["deleted_frames"] == 1
    assert counts["refused{reason=not_authorised}"] >= 1
