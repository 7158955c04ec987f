"""Cover traffic's shell: the seam every wire frame leaves through, paced by the circuit's slots.

Theory of operation
-------------------
The sender hands each 4 096-byte wire frame to :meth:`Pacer.send_frame` (the ``WireSend``
seam) and awaits it like a relay's SEND: it returns once the relay STORED the frame, or raises
as :meth:`RelayLink.send` does. For each circuit (line, relay url) of an established line with
cover on, the pacer keeps a FIFO of such frames and one task that wakes at each slot of the
circuit's schedule (:mod:`backchannel.proto.cover`): it sends the next queued real frame, or,
when none waits, a cover frame sealed for that circuit (``wire.seal_cover`` with 16 fresh
random bytes). The relay and the network see one frame per slot either way.

- A cover frame is sent only on a connected link; one whose SEND fails is dropped (never
  queued, never retried), so a circuit whose relay is down piles nothing up. A slot passes
  without a frame while ``IN_FLIGHT`` SENDs of the circuit (real or cover alike) are unanswered.
  Real frames wait only for a slot: the sender's window bounds how many there are.
- A FLASH under ``cover_flash = "immediate"`` takes the queue up to and including it at once,
  off schedule (it reaches the peer in order, so what was queued before it goes first).
- The idle rule needs to know when the peer was last heard: :meth:`heard` is told of every
  authenticated frame (the monitor's ``on_contact``).
- Circuits start and stop on the monitor's tick (:meth:`reconcile`): cover begins once a line
  is established and follows its circuits and its rate. A line with rate 0, or not yet
  established, bypasses the pacer: its frames go at once, as without cover.

The costs are counted per circuit (frames real and cover, bytes per second out and in) for
``status`` and the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backchannel.aio import TaskSet
from backchannel.errors import BackchannelError, ConfigError, InvalidArgument, TransportError
from backchannel.proto import cover, wire
from backchannel.proto.cover import CoverPolicy, Mode, Slots
from backchannel.station import config as settings
from backchannel.station.circuit_keys import CircuitKeyring
from backchannel.station.config import StationConfig
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.relay_url import shown
from backchannel.station.store import Store

if TYPE_CHECKING:  # (they import the outbox, which builds the pacer)
    from backchannel.station.monitor import Monitor
    from backchannel.station.reading import Views

log = logging.getLogger("backchannel.cover")

Circuit = tuple[bytes, str]  # (line id, relay url)
#: SENDs of one circuit awaiting the relay's answer at most: beyond, slots pass without a frame
#: (cover is never queued; real frames wait for a later slot).
IN_FLIGHT = 4
#: Seconds over which bytes per second are averaged.
METER_WINDOW = 10


class Meter:
    """Bytes per second over the last ``METER_WINDOW`` seconds, in one-second buckets (bounded
    whatever the rate)."""

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [second, bytes]
        self._since: float | None = None

    def add(self, now: float, n: int) -> None:
        second = int(now)
        if self._since is None:
            self._since = now
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([second, n])
        self._prune(now)

    def rate(self, now: float) -> float:
        self._prune(now)
        if self._since is None:
            return 0.0
        span = min(float(METER_WINDOW), max(1.0, now - self._since))
        return sum(n for _, n in self._buckets) / span

    def _prune(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= int(now) - METER_WINDOW:
            self._buckets.popleft()


@dataclass
class Costs:
    """What one circuit sent and received."""

    sent_real: int = 0
    sent_cover: int = 0
    cover_skipped: int = 0
    received: int = 0
    out: Meter = field(default_factory=Meter)
    into: Meter = field(default_factory=Meter)


@dataclass
class _Real:
    send_id: bytes
    frame: bytes
    done: asyncio.Future[None]


class _Paced:
    """One circuit under cover: its queue of real frames, its schedule, its task."""

    def __init__(self, circuit: Circuit, slots: Slots) -> None:
        self.circuit = circuit
        self.slots = slots
        self.queue: deque[_Real] = deque()
        self.wake = asyncio.Event()
        self.in_flight = 0  # SENDs of this circuit not yet answered, real and cover
        self.task: asyncio.Task[None] | None = None


class Pacer:
    """The ``WireSend`` seam with cover traffic (see the module docstring)."""

    def __init__(
        self, lines: Lines, links: Links, store: Store, config: StationConfig, keys: CircuitKeyring
    ) -> None:
        self._lines = lines
        self._links = links
        self._store = store
        self._config = config
        self._clock = lines.clock
        self._rng = lines.rng
        self._paced: dict[Circuit, _Paced] = {}
        self._costs: dict[Circuit, Costs] = {}
        self._keys = keys
        self._heard: dict[bytes, float] = {}  # line -> monotonic time the peer was last heard
        self._overrides: dict[bytes, tuple[float | None, str | None]] | None = None
        self._tasks = TaskSet("cover")
        self._sends = TaskSet("cover sends")
        self._stopped = False

    def attach(self, monitor: Monitor, views: Views) -> None:
        """Hear the monitor's tick (circuits start and stop) and the peer's contact (the idle
        rule); show each circuit's cover and costs in the views (status, the console)."""
        monitor.on_tick.append(self.reconcile)
        monitor.on_contact.append(self.heard)
        views.cover = self.circuit_view

    # ---- settings ------------------------------------------------------------------------

    def policy(self, line_id: bytes) -> CoverPolicy:
        """The line's cover: its own rate and FLASH policy (``line cover``), else the station's."""
        if self._overrides is None:
            self._overrides = self._store.line_covers()
        rate, flash = self._overrides.get(line_id, (None, None))
        c = self._config
        return CoverPolicy(
            rate=c.cover_rate if rate is None else rate,
            flash=flash or c.cover_flash,
            idle_after=c.cover_idle_after,
            idle_interval=c.cover_idle_interval,
        )

    def line_cover(self, line: str, rate: float | None = None, flash: str | None = None) -> dict[str, Any]:
        """Show, or set, the cover of one line (rate in frames/s per circuit, 0: off; FLASH
        policy "slot" or "immediate"); kept in the station's database."""
        live = self._lines.find(line)
        try:
            rate = None if rate is None else settings.cover_rate(rate, "the cover rate")
            flash = None if flash is None else settings.cover_flash(flash, "the FLASH policy")
        except ConfigError as exc:
            raise InvalidArgument(str(exc)) from None
        if rate is not None or flash is not None:
            with self._store.transaction():
                self._store.set_line_cover(live.line_id, rate, flash)
            self._overrides = None
            self.reconcile()
        own_rate, own_flash = self.policy_source(live.line_id)
        policy = self.policy(live.line_id)
        return {
            "line": live.row.name,
            "rate": policy.rate,
            "flash": policy.flash,
            "rate_from": own_rate,
            "flash_from": own_flash,
            "idle_after": policy.idle_after,
            "idle_interval": policy.idle_interval,
            "circuits": [
                {"url": shown(url), **self.circuit_view(live.line_id, url)}  # (never a relay's token)
                for url in self._links.circuit_urls(live.line_id)
            ],
        }

    def policy_source(self, line_id: bytes) -> tuple[str, str]:
        """Where the rate and the FLASH policy come from: "line" (its own) or "station"."""
        self.policy(line_id)
        assert self._overrides is not None
        rate, flash = self._overrides.get(line_id, (None, None))
        return ("station" if rate is None else "line"), ("station" if flash is None else "line")

    # ---- the seam ------------------------------------------------------------------------

    async def send_frame(
        self, line_id: bytes, url: str, send_id: bytes, frame: bytes, precedence: str | None
    ) -> None:
        """Send one wire frame on the circuit at its next slot; returns once STORED."""
        if self._stopped:
            raise TransportError("the station is shutting down")
        paced = self._paced.get((line_id, url)) or self._start_if_due(line_id, url)
        if paced is None:  # cover off, or the line not established: at once, as without cover
            await self._send(line_id, url, send_id, frame, real=True)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        paced.queue.append(_Real(send_id, frame, done))
        policy = self.policy(line_id)
        if policy.immediate(precedence):
            while paced.queue:  # the queue up to and including the FLASH, off schedule
                self._send_real(paced, paced.queue.popleft())
        elif paced.slots.mode is Mode.IDLE:
            paced.wake.set()  # the full rate returns at once
        await done

    def heard(self, line_id: bytes, url: str | None) -> None:
        """An authenticated frame came from the peer: the line is not idle."""
        now = self._clock.monotonic()
        self._heard[line_id] = now
        if url is not None:
            costs = self._costs_of((line_id, url))
            if costs is not None:
                costs.received += 1
                costs.into.add(now, wire.FRAME_SIZE)
        for (lid, _), paced in self._paced.items():
            if lid == line_id and paced.slots.mode is Mode.IDLE:
                paced.wake.set()

    # ---- circuits --------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Start cover on each circuit of each established line that has it on; stop it where
        a circuit went, or the rate went to 0 (run on the monitor's tick)."""
        if self._stopped:
            return
        due = {
            (line_id, url)
            for line_id in self._lines.established()
            if self.policy(line_id).on
            for url in self._links.circuit_urls(line_id)
        }
        for circuit in list(self._paced):
            if circuit not in due:
                self._stop_circuit(self._paced.pop(circuit))
        for line_id, url in due - set(self._paced):
            self._start(line_id, url)
        known = {(lid, url) for lid in self._lines.ids() for url in self._links.circuit_urls(lid)}
        for circuit in list(self._costs):
            if circuit not in known:
                del self._costs[circuit]

    def _start_if_due(self, line_id: bytes, url: str) -> _Paced | None:
        if self._stopped or line_id not in self._lines.established() or not self.policy(line_id).on:
            return None
        if url not in self._links.circuit_urls(line_id):
            return None
        return self._start(line_id, url)

    def _start(self, line_id: bytes, url: str) -> _Paced:
        now = self._clock.monotonic()
        self._heard.setdefault(line_id, now)  # the peer has idle_after to be heard
        paced = _Paced((line_id, url), cover.first(self.policy(line_id), now, self._draw()))
        self._paced[(line_id, url)] = paced
        paced.task = self._tasks.spawn(self._run(paced), "cover circuit")
        return paced

    def _stop_circuit(self, paced: _Paced) -> None:
        """Cover ends on this circuit: what was queued goes at once (or fails, if it left)."""
        if paced.task is not None:
            paced.task.cancel()
        while paced.queue:
            self._send_real(paced, paced.queue.popleft())

    async def stop(self) -> None:
        """End every circuit's task; frames still queued fail (the sender resends them after
        the restart: they are stored)."""
        self._stopped = True
        await self._tasks.close()
        for paced in self._paced.values():
            while paced.queue:
                done = paced.queue.popleft().done
                if not done.done():
                    done.set_exception(TransportError("the station is shutting down"))
        self._paced.clear()
        await self._sends.close()

    # ---- the slots --------------------------------------------------------------------------

    async def _run(self, paced: _Paced) -> None:
        line_id, _ = paced.circuit
        while True:
            delay = paced.slots.at - self._clock.monotonic()
            if delay > 0:
                woke = False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await paced.wake.wait()
                        woke = True
                if woke:  # a real frame, or the peer, while idle: full rate at once
                    paced.wake.clear()
                    paced.slots = cover.hurry(
                        self.policy(line_id), paced.slots, self._clock.monotonic(), self._draw()
                    )
                    continue
            self._slot(paced)
            now = self._clock.monotonic()
            paced.slots = cover.following(
                self.policy(line_id),
                paced.slots,
                now,
                self._heard.get(line_id),
                bool(paced.queue),
                self._draw(),
            )
            if paced.slots.mode is Mode.OFF:  # (the line's rate went to 0: reconcile ends it)
                if self._paced.get(paced.circuit) is paced:
                    del self._paced[paced.circuit]
                while paced.queue:
                    self._send_real(paced, paced.queue.popleft())
                return

    def _slot(self, paced: _Paced) -> None:
        """One slot: the next real frame, else a cover frame; none while ``IN_FLIGHT`` SENDs
        of the circuit are unanswered (the same rule for both, so that a slow relay shows no
        difference between them)."""
        costs = self._costs_of(paced.circuit)
        if paced.in_flight >= IN_FLIGHT:
            if costs is not None:
                costs.cover_skipped += 1
            return
        while paced.queue:
            real = paced.queue.popleft()
            if not real.done.done():  # (a cancelled sender no longer waits for it)
                self._send_real(paced, real)
                return
        line_id, url = paced.circuit
        send_id = self._links.send_id(line_id, url)
        if send_id is None or not self._links.connected(url) or costs is None:
            if costs is not None:
                costs.cover_skipped += 1  # a slot with no frame: the relay is away anyway
            return
        frame = wire.seal_cover(self._keys.outbound(line_id, url), self._rng.bytes(16))
        paced.in_flight += 1
        self._sends.spawn(self._send_cover(paced, send_id, frame), "cover send")

    def _send_real(self, paced: _Paced, real: _Real) -> None:
        line_id, url = paced.circuit

        async def send() -> None:
            try:
                await self._send(line_id, url, real.send_id, real.frame, real=True)
            except BaseException as exc:
                if not real.done.done():
                    real.done.set_exception(
                        exc if isinstance(exc, Exception) else TransportError("the station is shutting down")
                    )
                if not isinstance(exc, Exception):
                    raise
            else:
                if not real.done.done():
                    real.done.set_result(None)
            finally:
                paced.in_flight -= 1

        paced.in_flight += 1
        self._sends.spawn(send(), "cover real send", report=False)

    async def _send_cover(self, paced: _Paced, send_id: bytes, frame: bytes) -> None:
        line_id, url = paced.circuit
        try:
            await self._send(line_id, url, send_id, frame, real=False)
        except BackchannelError as exc:  # dropped: cover is never parked or retried
            costs = self._costs_of(paced.circuit)
            if costs is not None:
                costs.cover_skipped += 1
            log.debug("a cover frame to %s was dropped: %s", url, exc)
        finally:
            paced.in_flight -= 1

    async def _send(self, line_id: bytes, url: str, send_id: bytes, frame: bytes, *, real: bool) -> None:
        await self._links.link(url).send(send_id, frame)
        costs = self._costs_of((line_id, url))
        if costs is not None:
            if real:
                costs.sent_real += 1
            else:
                costs.sent_cover += 1
            costs.out.add(self._clock.monotonic(), len(frame))

    # ---- helpers ----------------------------------------------------------------------------

    def _draw(self) -> float:
        return cover.uniform(self._rng.bytes(cover.DRAW_BYTES))

    def _costs_of(self, circuit: Circuit) -> Costs | None:
        """The circuit's counters (only for circuits the line has: bounded by them)."""
        costs = self._costs.get(circuit)
        if costs is None:
            line_id, url = circuit
            if line_id not in self._lines or url not in self._links.circuit_urls(line_id):
                return None
            costs = self._costs[circuit] = Costs()
        return costs

    # ---- what status shows ---------------------------------------------------------------------

    def circuit_view(self, line_id: bytes, url: str) -> dict[str, Any]:
        """The circuit's cover and costs, for ``status`` and the console."""
        policy = self.policy(line_id)
        now = self._clock.monotonic()
        paced = self._paced.get((line_id, url))
        mode = Mode.OFF
        if paced is not None:
            mode = cover.mode(policy, now, self._heard.get(line_id), bool(paced.queue))
        costs = self._costs.get((line_id, url)) or Costs()
        return {
            "cover_rate": policy.rate,
            "cover_flash": policy.flash,
            "cover_mode": mode.value,
            "cover_rate_now": {Mode.FULL: policy.rate, Mode.IDLE: 1.0 / policy.idle_interval}.get(mode, 0.0),
            "sent_real": costs.sent_real,
            "sent_cover": costs.sent_cover,
            "cover_skipped": costs.cover_skipped,
            "received": costs.received,
            "out_bytes_per_s": round(costs.out.rate(now), 1),
            "in_bytes_per_s": round(costs.into.rate(now), 1),
        }
