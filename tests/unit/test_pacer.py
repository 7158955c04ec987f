"""The pacer (station/pacer.py) on the event loop, against a recording link: one frame per
slot, real frames in order in place of cover, FLASH "immediate", a relay that is down piles
nothing up, a failed cover SEND is dropped, rate 0 bypasses it, stop() ends it cleanly.

(The whole path with real relays and stations: tests/integration/test_cover_traffic.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from backchannel.clock import FakeRng, SystemClock
from backchannel.errors import InvalidArgument, TransportError
from backchannel.proto import wire
from backchannel.station.config import StationConfig
from backchannel.station.pacer import IN_FLIGHT, Pacer

from support.figures import figure

LINE = b"L" * 16
URL = "ws://127.0.0.1:1"
SEND_ID = b"S" * 16


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []
        self.fail = False
        self.connected = True
        self.delay = 0.0

    async def send(self, send_id: bytes, frame: bytes) -> bytes:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail or not self.connected:
            raise TransportError("relay down")
        self.sent.append((asyncio.get_running_loop().time(), frame))
        return b"m" * 16


class FakeLinks:
    def __init__(self) -> None:
        self.the_link = FakeLink()

    def link(self, url: str) -> FakeLink:
        return self.the_link

    def connected(self, url: str) -> bool:
        return self.the_link.connected

    def send_id(self, line_id: bytes, url: str) -> bytes | None:
        return SEND_ID

    def circuit_urls(self, line_id: bytes) -> list[str]:
        return [URL]


class FakeLive:
    line_id = LINE

    class row:
        name = "moscow"


class FakeLines:
    clock = SystemClock()

    def __init__(self) -> None:
        self.rng = FakeRng(b"pacer")
        self.up = True

    def established(self) -> list[bytes]:
        return [LINE] if self.up else []

    def ids(self) -> list[bytes]:
        return [LINE]

    def __contains__(self, line_id: object) -> bool:
        return line_id == LINE

    def __getitem__(self, line_id: bytes) -> FakeLive:
        return FakeLive()

    def find(self, name: str) -> FakeLive:
        if name != "moscow":
            raise InvalidArgument("no such line")
        return FakeLive()


class FakeStore:
    def __init__(self) -> None:
        self.covers: dict[bytes, tuple[float | None, str | None]] = {}

    def line_covers(self) -> dict[bytes, tuple[float | None, str | None]]:
        return dict(self.covers)

    def set_line_cover(self, line_id: bytes, rate: float | None, flash: str | None) -> None:
        old = self.covers.get(line_id, (None, None))
        self.covers[line_id] = (old[0] if rate is None else rate, old[1] if flash is None else flash)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield


class FakeKeys:
    def outbound(self, line_id: bytes, url: str) -> wire.CircuitKeys:
        return wire.circuit_keys(b"a" * 32, url)


def make(rate: float = 50.0, **config: Any) -> tuple[Pacer, FakeLinks]:
    links = FakeLinks()
    settings = StationConfig(cover_rate=rate, cover_idle_after=5.0, cover_idle_interval=1.0, **config)
    pacer = Pacer(FakeLines(), links, FakeStore(), settings, FakeKeys())  # type: ignore[arg-type]
    return pacer, links


def is_cover(frame: bytes) -> bool:
    keys = wire.circuit_keys(b"a" * 32, URL)
    return isinstance(wire.open_frame(keys, frame), wire.Cover)


def real_frames(n: int) -> list[bytes]:
    keys = wire.circuit_keys(b"a" * 32, URL)
    return [wire.seal_fragments(keys, seq, b"envelope %d" % seq)[0] for seq in range(1, n + 1)]


def test_cover_flows_at_the_rate_and_real_frames_take_slots_in_order() -> None:
    async def main() -> None:
        pacer, links = make(rate=50.0)
        pacer.reconcile()
        await asyncio.sleep(1.0)
        covers = len(links.the_link.sent)
        figure("pacer: cover frames in 1 s at 50/s", covers, "frames")
        assert 30 <= covers <= 70
        assert all(is_cover(f) and len(f) == wire.FRAME_SIZE for _, f in links.the_link.sent)
        frames = real_frames(5)
        await asyncio.wait_for(
            asyncio.gather(*(pacer.send_frame(LINE, URL, SEND_ID, f, None) for f in frames)), 5
        )
        sent = [f for _, f in links.the_link.sent]
        assert [f for f in sent if not is_cover(f)] == frames  # in order, each once
        first = sent.index(frames[0])
        assert sent[first : first + 5] == frames  # back to back: one per slot, no cover between
        times = [t for t, _ in links.the_link.sent]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < 1.5 / 50 + 0.1  # (slack for a loaded machine)
        view = pacer.circuit_view(LINE, URL)
        assert view["sent_real"] == 5 and view["sent_cover"] == len(sent) - 5
        assert view["cover_mode"] == "full" and view["out_bytes_per_s"] > 0
        await pacer.stop()

    asyncio.run(main())


def test_a_relay_that_is_down_piles_nothing_up_and_failed_cover_is_dropped() -> None:
    async def main() -> None:
        pacer, links = make(rate=100.0)
        links.the_link.connected = False
        pacer.reconcile()
        await asyncio.sleep(0.5)
        assert links.the_link.sent == [] and len(pacer._sends) == 0  # nothing in flight, nothing kept
        links.the_link.connected, links.the_link.fail = True, True
        await asyncio.sleep(0.3)
        assert len(pacer._sends) <= IN_FLIGHT  # a few SENDs in flight per circuit, no more
        skipped = pacer.circuit_view(LINE, URL)["cover_skipped"]
        assert skipped > 20
        with pytest.raises(TransportError):  # a real frame's failure reaches its sender
            await asyncio.wait_for(pacer.send_frame(LINE, URL, SEND_ID, real_frames(1)[0], None), 5)
        links.the_link.fail = False
        await asyncio.sleep(0.2)
        assert links.the_link.sent and all(is_cover(f) for _, f in links.the_link.sent)
        await pacer.stop()

    asyncio.run(main())


def test_a_slow_relay_keeps_a_bounded_number_of_sends_in_flight_real_or_cover() -> None:
    async def main() -> None:
        pacer, links = make(rate=200.0)
        links.the_link.delay = 0.5
        pacer.reconcile()
        await asyncio.sleep(0.4)
        assert len(pacer._sends) == IN_FLIGHT
        waiting = asyncio.ensure_future(pacer.send_frame(LINE, URL, SEND_ID, real_frames(1)[0], None))
        await asyncio.sleep(0.05)
        assert len(pacer._sends) == IN_FLIGHT and not waiting.done()  # the real frame waits too
        await asyncio.wait_for(waiting, 5)  # and goes once a SEND was answered
        await pacer.stop()
        assert len(pacer._sends) == 0

    asyncio.run(main())


def test_flash_immediate_goes_off_schedule_and_slot_waits_for_a_slot() -> None:
    async def main() -> None:
        pacer, links = make(rate=0.5, cover_flash="immediate")  # a slot every 1-3 s
        pacer.reconcile()
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        frame = real_frames(1)[0]
        await asyncio.wait_for(pacer.send_frame(LINE, URL, SEND_ID, frame, "FLASH"), 5)
        assert loop.time() - started < 0.5  # not the next slot (>= 1 s away): at once
        routine = real_frames(2)[1]
        waiting = asyncio.ensure_future(pacer.send_frame(LINE, URL, SEND_ID, routine, "ROUTINE"))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # a ROUTINE frame waits for its slot (1 s away at least)
        await pacer.stop()
        with pytest.raises(TransportError):  # stopped: it fails, and its sender resends it later
            await waiting
        assert [f for _, f in links.the_link.sent if not is_cover(f)] == [frame]

    asyncio.run(main())


def test_rate_zero_and_a_line_not_established_bypass_the_pacer() -> None:
    async def main() -> None:
        pacer, links = make(rate=0.0)
        pacer.reconcile()
        frame = real_frames(1)[0]
        await asyncio.wait_for(pacer.send_frame(LINE, URL, SEND_ID, frame, None), 1)
        assert [f for _, f in links.the_link.sent] == [frame]
        assert pacer.circuit_view(LINE, URL)["cover_mode"] == "off"
        await asyncio.sleep(0.2)
        assert len(links.the_link.sent) == 1  # no cover
        await pacer.stop()
        lines_down, links2 = make(rate=50.0)
        lines_down._lines.up = False  # type: ignore[attr-defined]
        lines_down.reconcile()
        await asyncio.wait_for(lines_down.send_frame(LINE, URL, SEND_ID, frame, None), 1)
        await asyncio.sleep(0.2)
        assert [f for _, f in links2.the_link.sent] == [frame]
        await lines_down.stop()

    asyncio.run(main())


def test_the_idle_pause_and_the_return_of_the_full_rate() -> None:
    async def main() -> None:
        links = FakeLinks()
        settings = StationConfig(cover_rate=50.0, cover_idle_after=0.3, cover_idle_interval=1.0)
        pacer = Pacer(FakeLines(), links, FakeStore(), settings, FakeKeys())  # type: ignore[arg-type]
        pacer.reconcile()
        await asyncio.sleep(0.6)
        assert pacer.circuit_view(LINE, URL)["cover_mode"] == "idle"
        before = len(links.the_link.sent)
        await asyncio.sleep(0.5)
        assert len(links.the_link.sent) - before <= 2  # one per second, not 25
        pacer.heard(LINE, URL)  # the peer is back
        await asyncio.sleep(0.25)
        assert pacer.circuit_view(LINE, URL)["cover_mode"] == "full"
        assert len(links.the_link.sent) - before >= 5
        await pacer.stop()

    asyncio.run(main())


def test_the_line_setting_overrides_the_station_and_is_checked() -> None:
    async def main() -> None:
        pacer, _links = make(rate=1.0)
        shown = pacer.line_cover("moscow")
        assert (shown["rate"], shown["flash"], shown["rate_from"]) == (1.0, "slot", "station")
        shown = pacer.line_cover("moscow", rate=0, flash="immediate")
        assert (shown["rate"], shown["flash"], shown["rate_from"], shown["flash_from"]) == (
            0.0,
            "immediate",
            "line",
            "line",
        )
        assert shown["circuits"][0]["cover_mode"] == "off"
        assert pacer.line_cover("moscow", flash="slot")["rate"] == 0.0  # the rate is kept
        for bad in ({"rate": -1}, {"rate": 1e9}, {"flash": "later"}):
            with pytest.raises(InvalidArgument):
                pacer.line_cover("moscow", **bad)
        await pacer.stop()

    asyncio.run(main())


def test_turning_cover_off_ends_the_circuit_and_frames_then_go_at_once() -> None:
    async def main() -> None:
        pacer, links = make(rate=50.0)
        pacer.reconcile()
        await asyncio.sleep(0.1)
        pacer._overrides = {LINE: (0.0, None)}  # as if set elsewhere, before a tick reconciles
        await asyncio.sleep(0.1)  # the circuit's task sees it at its next slot and ends
        assert pacer._paced == {}
        sent = len(links.the_link.sent)
        await asyncio.sleep(0.2)
        assert len(links.the_link.sent) == sent  # no cover any more, and the loop did not spin
        frame = real_frames(1)[0]
        await asyncio.wait_for(pacer.send_frame(LINE, URL, SEND_ID, frame, None), 1)
        assert links.the_link.sent[-1][1] == frame
        shown = pacer.line_cover("moscow", rate=20)  # on again: reconcile starts it
        assert shown["circuits"][0]["cover_mode"] == "full" and len(pacer._paced) == 1
        await pacer.stop()

    asyncio.run(main())
