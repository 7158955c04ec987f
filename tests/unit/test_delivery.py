"""The delivery engine's pure parts: Waiters, backoff, and the Sender against a fake station."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from backchannel.errors import RelayRefused, TransportError
from backchannel.station.backoff import next_backoff
from backchannel.station.config import StationConfig
from backchannel.station.delivery import INITIAL_BACKOFF, LEVELS, Sender, Waiters

L1, L2 = b"\x01" * 16, b"\x02" * 16


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


async def settle(condition: Callable[[], bool], rounds: int = 200) -> None:
    """Let the event loop run until ``condition`` holds (no wall-clock waiting)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never became true")


# ---- Waiters -----------------------------------------------------------------------------


def test_a_waiter_is_released_only_on_flush() -> None:
    async def body() -> None:
        w = Waiters()
        future = w.register(L1, 5, "delivered")
        w.reached(L1, 5, "delivered")
        await asyncio.sleep(0)
        assert not future.done()
        w.flush()
        assert future.done() and future.result() is None

    run(body)


def test_relayed_is_released_at_once_because_it_is_noted_after_its_commit() -> None:
    async def body() -> None:
        w = Waiters()
        future = w.register(L1, 5, "relayed")
        w.reached(L1, 5, "relayed")
        assert future.done()

    run(body)


def test_a_higher_level_releases_lower_waiters_but_not_higher_ones() -> None:
    async def body() -> None:
        w = Waiters()
        relayed = w.register(L1, 3, "relayed")
        delivered = w.register(L1, 3, "delivered")
        acked = w.register(L1, 3, "acknowledged")
        w.reached(L1, 3, "delivered")
        w.flush()
        assert relayed.done() and delivered.done()
        assert not acked.done()
        w.reached(L1, 3, "acknowledged")
        w.flush()
        assert acked.done()

    run(body)


def test_a_lower_level_does_not_release_a_higher_waiter() -> None:
    async def body() -> None:
        w = Waiters()
        acked = w.register(L1, 3, "acknowledged")
        w.reached(L1, 3, "relayed")
        w.reached(L1, 3, "delivered")
        w.flush()
        assert not acked.done()

    run(body)


def test_a_waiter_is_released_only_for_its_own_line_and_sequence() -> None:
    async def body() -> None:
        w = Waiters()
        mine = w.register(L1, 3, "delivered")
        w.reached(L2, 3, "delivered")
        w.reached(L1, 4, "delivered")
        w.flush()
        assert not mine.done()

    run(body)


def test_a_cumulative_receipt_releases_every_sequence_up_to_it() -> None:
    async def body() -> None:
        w = Waiters()
        futures = {seq: w.register(L1, seq, "delivered") for seq in (2, 3, 5)}
        other_line = w.register(L2, 2, "delivered")
        w.reached_upto(L1, 3, "delivered")
        assert not any(f.done() for f in futures.values())
        w.flush()
        assert futures[2].done() and futures[3].done()
        assert not futures[5].done()
        assert not other_line.done()

    run(body)


def test_reached_upto_for_an_unknown_line_is_harmless() -> None:
    async def body() -> None:
        w = Waiters()
        w.reached_upto(L1, 10, "delivered")
        w.flush()

    run(body)


def test_fail_all_fails_every_pending_waiter() -> None:
    async def body() -> None:
        w = Waiters()
        a, b = w.register(L1, 1, "delivered"), w.register(L2, 9, "acknowledged")
        w.fail_all(TransportError("shutting down"))
        for future in (a, b):
            with pytest.raises(TransportError):
                future.result()
        w.reached(L1, 1, "delivered")  # nothing left to release
        w.flush()

    run(body)


def test_a_cancelled_waiter_is_skipped_by_flush() -> None:
    async def body() -> None:
        w = Waiters()
        cancelled, kept = w.register(L1, 1, "delivered"), w.register(L1, 1, "delivered")
        cancelled.cancel()
        w.reached(L1, 1, "delivered")
        w.flush()
        assert cancelled.cancelled() and kept.done() and not kept.cancelled()

    run(body)


def test_levels_are_ordered_relayed_delivered_acknowledged() -> None:
    assert LEVELS["relayed"] < LEVELS["delivered"] < LEVELS["acknowledged"]


# ---- backoff -----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum() -> None:
    delays, current = [], INITIAL_BACKOFF
    for _ in range(7):
        current = next_backoff(current, 5.0)
        delays.append(current)
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_never_exceeds_a_small_maximum() -> None:
    assert next_backoff(0.25, 0.1) == 0.1


# ---- Sender against a fake station --------------------------------------------------------


class FakeLink:
    def __init__(self, url: str, fail: BaseException | None = None) -> None:
        self.url, self.fail = url, fail
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, send_id: bytes, frame: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append((send_id, frame))


class FakeStation:
    def __init__(
        self, links: dict[str, FakeLink], sendable: Callable[[bytes, int], bool] | None = None
    ) -> None:
        self.links = links
        self.sendable = sendable or (lambda line_id, seq: True)
        self.relayed: list[tuple[bytes, int]] = []
        self.fragments = 1

    def may_send(self, line_id: bytes, seq: int) -> bool:
        return self.sendable(line_id, seq)

    def circuit_urls(self, line_id: bytes) -> list[str]:
        return sorted(self.links)

    def send_id(self, line_id: bytes, url: str) -> bytes | None:
        return b"S" + url.encode() if url in self.links else None

    def outbound_frame(self, line_id: bytes, seq: int) -> bytes:
        return line_id[:1] + seq.to_bytes(2, "big")

    def wire_frames(self, line_id: bytes, seq: int, url: str) -> tuple[list[bytes], str | None]:
        """(A stand-in for the circuit frames: the "envelope", then ``fragments - 1`` more.)"""
        head = self.outbound_frame(line_id, seq)
        return [head] + [head + bytes([i]) for i in range(1, self.fragments)], None

    def link(self, url: str) -> FakeLink:
        return self.links[url]

    def mark_sent(self, items: list[tuple[bytes, int, str]]) -> None:
        self.relayed.extend((line_id, seq) for line_id, seq, _ in items)


def test_a_frame_of_a_removed_circuit_is_not_sent() -> None:
    async def body() -> None:
        link = FakeLink("ws://a")
        station = FakeStation({"ws://a": link})
        sender = Sender(station, station, StationConfig())  # type: ignore[arg-type]
        await sender.start([(L1, 1, "ws://gone")])
        for _ in range(20):
            await asyncio.sleep(0)
        assert link.sent == [] and station.relayed == [] and sender.pending() == 0
        await sender.stop()

    run(body)


def test_the_sender_sends_each_frame_to_every_circuit_and_records_relayed() -> None:
    async def body() -> None:
        links = {"ws://a": FakeLink("ws://a"), "ws://b": FakeLink("ws://b")}
        station = FakeStation(links)
        sender = Sender(station, station, StationConfig())  # type: ignore[arg-type]
        sender.enqueue([(L1, 1), (L1, 2)])
        await sender.start([])
        await settle(lambda: len(station.relayed) == 4 and sender.pending() == 0)
        for link in links.values():
            assert [frame for _, frame in link.sent] == [b"\x01\x00\x01", b"\x01\x00\x02"]
        assert sorted(station.relayed) == [(L1, 1), (L1, 1), (L1, 2), (L1, 2)]
        await sender.stop()

    run(body)


def test_the_sender_holds_back_frames_the_station_may_not_send_yet() -> None:
    async def body() -> None:
        link = FakeLink("ws://a")
        station = FakeStation({"ws://a": link}, sendable=lambda line_id, seq: seq == 1)
        sender = Sender(station, station, StationConfig())  # type: ignore[arg-type]
        sender.enqueue([(L1, 1), (L1, 2)])
        await sender.start([])
        await settle(lambda: station.relayed == [(L1, 1)])
        for _ in range(20):
            await asyncio.sleep(0)
        assert [frame for _, frame in link.sent] == [b"\x01\x00\x01"]
        await sender.stop()

    run(body)


@pytest.mark.parametrize("failure", [TransportError("down"), RelayRefused("full", relay_code=6)])
def test_a_failed_send_is_parked_and_resent_when_the_link_comes_back(failure: Exception) -> None:
    async def body() -> None:
        link = FakeLink("ws://a", fail=failure)
        station = FakeStation({"ws://a": link})
        sender = Sender(station, station, StationConfig())  # type: ignore[arg-type]
        await sender.start([(L1, 1, "ws://a")])
        await settle(lambda: sender.pending() == 1 and sender._parked.get("ws://a") == {(L1, 1, "ws://a")})
        assert station.relayed == []
        link.fail = None
        sender.on_link_state("ws://a", up=True)
        await settle(lambda: station.relayed == [(L1, 1)])
        assert link.sent == [(b"Sws://a", b"\x01\x00\x01")]
        assert sender.pending() == 0
        await sender.stop()

    run(body)


def test_enqueueing_the_same_frame_twice_sends_it_once() -> None:
    async def body() -> None:
        link = FakeLink("ws://a")
        station = FakeStation({"ws://a": link})
        sender = Sender(station, station, StationConfig())  # type: ignore[arg-type]
        sender.enqueue([(L1, 1), (L1, 1)])
        sender.enqueue([(L1, 1)])
        assert sender.pending() == 1
        await sender.start([])
        await settle(lambda: station.relayed == [(L1, 1)])
        assert len(link.sent) == 1
        await sender.stop()

    run(body)


class FlakyLink(FakeLink):
    """Refuses the SEND of one fragment (its last byte ``bad``) until ``fail`` is cleared."""

    def __init__(self, url: str, bad: int) -> None:
        super().__init__(url)
        self.bad = bad
        self.flaky = True

    async def send(self, send_id: bytes, frame: bytes) -> None:
        if self.flaky and len(frame) == 4 and frame[-1] == self.bad:
            raise TransportError("lost")
        self.sent.append((send_id, frame))


def test_an_entry_is_stored_on_a_circuit_only_when_every_fragment_is() -> None:
    async def body() -> None:
        link = FlakyLink("ws://a", bad=2)
        station = FakeStation({"ws://a": link})
        station.fragments = 3
        sender = Sender(station, station, StationConfig())  # type: ignore[arg-type]
        await sender.start([(L1, 1, "ws://a")])
        await settle(lambda: sender._parked.get("ws://a") == {(L1, 1, "ws://a")})
        assert station.relayed == []  # two of three fragments stored is not stored
        link.flaky = False
        sender.on_link_state("ws://a", up=True)
        await settle(lambda: station.relayed == [(L1, 1)])
        frames = [frame for _, frame in link.sent]
        assert sorted(set(frames)) == [b"\x01\x00\x01", b"\x01\x00\x01\x01", b"\x01\x00\x01\x02"]
        assert len(frames) == 5  # all sent again after the failure (the relay keeps one of each)
        await sender.stop()

    run(body)
