"""The station's watch over its lines: link tests, circuit health, deadlines, gaps, alarms.

Theory of operation
-------------------
One task ticks about once a second (more often when the link-test interval is short). On
each tick, for every established line, it hands the line's core to the engine
(:func:`backchannel.proto.engine.ticking.tick`), which decides whether a link test is due,
which of the peer's tests to answer, how every circuit and the line stand
(:func:`backchannel.proto.engine.linkcheck.assess`) and whether a gap calls for a new
SUBSCRIBE; the monitor keeps the core it returns and turns its effects into sends and
alarms. The link watch is an immutable value in the core (``LiveLine.watch``); every event
the station reports here (a copy, a test, an answer, a relay connection, the line's
circuits) goes through a function of :mod:`backchannel.proto.engine.linkcheck`. It also
escalates sent messages whose precedence deadline passed without an *acknowledged*
receipt, and raises an alarm when a sequence gap (frames held because an earlier one is
missing) has stayed open for longer than a link-test interval. Before that alarm, at half the
interval (and again at each doubling of the gap's age), the engine has it SUBSCRIBE again on
every circuit of the line: a relay then pushes every frame it holds unacknowledged, so a frame a relay
stored but never pushed heals the gap without an operator (issue 14).

Alarms are raised on a change of state, not on every tick; what the store says is open is
the starting point after a restart, so an alarm open before a restart is cleared once the
condition is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable

from backchannel.aio import TaskSet
from backchannel.errors import BackchannelError
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import linkcheck, ticking
from backchannel.proto.engine.linkcheck import LineWatch
from backchannel.proto.engine.recovery import PeerReport
from backchannel.proto.engine.ticking import Timing
from backchannel.proto.payloads import LinkTestReply
from backchannel.station.alarms import Alarms
from backchannel.station.config import StationConfig
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.liveline import LiveLine
from backchannel.station.outbox import Outbox
from backchannel.station.recorder import Recorder
from backchannel.station.relay_url import shown
from backchannel.station.store import Store

log = logging.getLogger("backchannel.monitor")

#: The alarm of a relay the station refuses (subject: its URL as shown; no line).
REFUSED = "relay_refused"


class _TickLedger:
    """The tick's read-only questions, answered by the store and the recorder."""

    def __init__(self, store: Store, recorder: Recorder) -> None:
        self.relayed_times = store.relayed_times
        self.last_checkpoint_sent = recorder.last_checkpoint_sent


def tick_seconds(interval: float) -> float:
    return max(0.05, min(1.0, interval / 8))


class Monitor:
    """The thin loop over the engine's link watch: it feeds events to ``proto.engine.linkcheck``
    and ``proto.engine.ticking``, keeps the watch they return in the line's ``LiveLine`` (the
    core's in-memory part), and carries out their effects (sends, alarms, SUBSCRIBE again)."""

    def __init__(
        self,
        lines: Lines,
        links: Links,
        outbox: Outbox,
        alarms: Alarms,
        recorder: Recorder,
        store: Store,
        config: StationConfig,
    ) -> None:
        self._lines = lines
        self._links = links
        self._outbox = outbox
        self._alarms = alarms
        self._store = store
        self._config = config
        self._clock = lines.clock
        self._recorder = recorder
        self._interval = config.link_test_interval
        self._ledger = _TickLedger(store, recorder)
        self._tasks = TaskSet("monitor")
        self._reported: dict[tuple[str, bytes, str], bool] = {}
        #: Other parts' periodic checks, run on every tick (the pairing timeout, cover).
        self.on_tick: list[Callable[[], None]] = []
        #: Told of every authenticated frame from the peer (cover or real): (line, circuit url).
        self.on_contact: list[Callable[[bytes, str | None], None]] = []

    async def start(self) -> None:
        for alarm in self._alarms.list():
            if alarm.line is not None:
                line = self._lines.find_id(alarm.line)
                if line is not None:
                    self._reported[(alarm.kind, line, alarm.subject)] = True
        self._tasks.spawn(self._run(), "monitor")

    async def stop(self) -> None:
        await self._tasks.close()

    def watch(self, live: LiveLine) -> LineWatch:
        """The line's link watch, started (and its peer report taken from the record) when
        first needed."""
        if live.watch is None:
            self.init_peer(live)
            live.watch = linkcheck.start(self._clock.now(), self._interval, self._circuits(live.line_id))
        return live.watch

    def _circuits(self, line_id: bytes) -> dict[str, bool]:
        """The line's circuits now: url -> whether our connection to that relay is up."""
        return {url: self._links.connected(url) for url in self._links.circuit_urls(line_id)}

    # ---- events from the station ------------------------------------------------------------

    def on_link_state(self, url: str, up: bool) -> None:
        if up:  # (a relay this station talks to again is no longer refused)
            self._alarms.clear_alarm(REFUSED, None, shown(url))
        now = self._clock.now()
        for live in self._lines.all():
            if live.watch is not None:
                live.watch = linkcheck.link_state(live.watch, url, up, now)

    def relay_refused(self, url: str, refusal: BackchannelError) -> None:
        """The station refused a relay (its key is not its pin; a plain URL it may not use)."""
        self._alarms.raise_alarm(REFUSED, None, shown(url), str(refusal))

    def relay_flooded(self, url: str, useless: int, until: float) -> None:
        """The station suspended a relay that flooded it: its circuits are down, now."""
        for line_id in self._lines.established():
            live = self._lines[line_id]
            if self.watch(live).circuit(url) is None:
                continue
            live.watch = linkcheck.suspend(self.watch(live), url, until)
            self._set(
                ("circuit_down", line_id, url),
                True,
                f"circuit {url} of line {self._lines.name(line_id)} is down: relay {url} "
                f"flooded this station with {useless} frames it had to drop; the station does not "
                f"connect to it for {until - self._clock.now():.0f} s",
            )

    def contact(self, line_id: bytes, url: str | None) -> None:
        """An authenticated frame came from the peer through ``url`` (a cover frame, or a copy
        of an entry): the peer is there (cover traffic's idle rule listens here)."""
        for listener in self.on_contact:
            listener(line_id, url)

    def copy_arrived(self, line_id: bytes, url: str | None, seq: int) -> None:
        self.contact(line_id, url)
        live = self._lines.get(line_id)
        if live is not None and url is not None and url in self._links.circuit_urls(line_id):
            # (not a removed circuit)
            live.watch = linkcheck.copy_arrived(self.watch(live), url, seq, self._clock.now())

    def contact_in(self, line_id: bytes, url: str) -> None:
        """A cover frame of the line came through ``url`` (authenticated: the circuit works)."""
        self.contact(line_id, url)
        live = self._lines.get(line_id)
        if live is not None and url in self._links.circuit_urls(line_id):
            live.watch = linkcheck.contact_in(self.watch(live), url, self._clock.now())

    def test_received(self, line_id: bytes, test_id: int, seq: int, url: str | None) -> None:
        live = self._lines.get(line_id)
        if live is not None:
            live.watch = linkcheck.test_received(self.watch(live), test_id, seq, url, self._clock.now())

    def reply_received(self, line_id: bytes, reply: LinkTestReply, seq: int, url: str | None = None) -> None:
        live = self._lines.get(line_id)
        if live is not None:
            live.watch = linkcheck.reply_received(
                self.watch(live),
                reply.test_id,
                seq,
                reply.circuits,
                reply.held / 1000,
                self._clock.now(),
                url,
            )

    def init_peer(self, live: LiveLine) -> None:
        """Before the engine first needs it: what the peer had of our direction, from the
        record (after a start; the core's ``peer`` then follows every report in memory)."""
        if live.peer is None:
            live.peer = PeerReport(has=self._recorder.peer_seen(live))

    def frames_lost(self, line_id: bytes, first: int) -> None:
        """The peer still lacks a frame we had already sent again: a relay loses or withholds
        what it stored (see ``PeerReport.loss_proved``)."""
        name, peer = self._lines.name(line_id), self._lines.peer_name(line_id)
        direction = self._lines[line_id].state.out_direction
        self._set(
            ("frames_lost", line_id, ""),
            True,
            f"line {name}: {peer} still lacks our entry no. {first} (record entry {direction}:{first}) "
            "though relays stored it and it was sent again: a relay loses or withholds frames; "
            "they are being sent again end to end",
        )

    def flash_received(self, line_id: bytes, seq: int) -> None:
        """An incoming FLASH is stored: with ``alarm_on_flash``, an alarm through the sinks (a
        command, a webhook) so that it reaches a person away from the console. The alarm names
        the message, never its text (a sink may be outside this machine); acknowledging the
        message clears it."""
        if self._config.alarm_on_flash:
            name, peer = self._lines.name(line_id), self._lines.peer_name(line_id)
            ref = f"{name}:in/{seq}"
            message = f"FLASH {ref} from {peer}: read it and acknowledge it (backchannel ack {ref})"
            self._alarms.raise_alarm("flash_received", line_id, f"in/{seq}", message)

    def gap(self, line_id: bytes, open_: bool) -> None:
        live = self._lines.get(line_id)
        if live is not None:
            live.watch = linkcheck.gap(self.watch(live), open_, self._clock.now())

    def circuits_changed(self, line_id: bytes) -> None:
        live = self._lines.get(line_id)
        if live is None:
            return
        watch, effects = linkcheck.follow_circuits(
            self.watch(live), line_id, self._circuits(line_id), self._clock.now()
        )
        live.watch = watch
        for effect in effects:
            self._apply(effect, self._clock.now())

    def test_soon(self, line_id: bytes) -> None:
        """Send the line's next link test at the next tick: its answer carries the peer's
        ``seen``, which tells a rotation that the peer applied it (``station.rotation``)."""
        live = self._lines.get(line_id)
        if live is not None and live.established:
            live.watch = dataclasses.replace(self.watch(live), next_test_at=self._clock.now())

    # ---- the tick ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(tick_seconds(self._interval))
            try:
                self.tick()
            except BackchannelError as exc:
                log.error("monitor tick failed: %s", exc)

    def tick(self) -> None:
        now = self._clock.now()
        timing = Timing(self._interval, self._config.resend_after, self._config.checkpoint_interval)
        for line_id in self._lines.established():
            live = self._lines[line_id]
            self.watch(live)
            self.init_peer(live)
            core, effects = ticking.tick(live.core, now, timing, self._ledger)
            live.peer, live.watch = core.peer, core.watch
            for effect in effects:
                self._apply(effect, now)
        for line_id, seq, precedence, created in self.overdue_messages(now):
            name = self._lines.name(line_id)
            self._set(
                ("deadline_passed", line_id, str(seq)),
                True,
                f"{precedence} message {name}:out/{seq} has not been acknowledged "
                f"{now - created:.0f} s after it was sent (deadline passed)",
            )
            self._mark_escalated(line_id, seq)
        for check in self.on_tick:
            check()

    def _apply(self, effect: fx.Effect, now: float) -> None:
        """Carry out one effect of the engine's tick (or of a change of the line's circuits)."""
        match effect:
            case fx.SendPayload(line_id, payload, kind):
                self._outbox.send_payload(line_id, payload, kind)
            case fx.SendCheckpoint(line_id):
                self._recorder.send_checkpoint(line_id)
            case fx.Count(name, n):
                with contextlib.suppress(BackchannelError), self._store.transaction(durable=False):
                    self._store.count(name, n)  # (only a statistic)
            case fx.Resend(line_id, seqs):
                log.warning(
                    "line %s: the peer still lacks %d frame(s) from %d on that a relay stored; "
                    "sending them again",
                    self._lines.name(line_id),
                    len(seqs),
                    seqs[0],
                )
                self._outbox.enqueue([(line_id, seq) for seq in seqs])
            case fx.FramesLost(line_id, first, True):
                self.frames_lost(line_id, first)
            case fx.FramesLost(line_id, _, False):
                self._set(("frames_lost", line_id, ""), False, "")
            case fx.CircuitDown(line_id, url, down, connected, last_in):
                last = "never" if last_in is None else f"{now - last_in:.1f} s ago"
                self._set(
                    ("circuit_down", line_id, url),
                    down,
                    f"circuit {shown(url)} of line {self._lines.name(line_id)} is down (relay connection "
                    f"{'up' if connected else 'lost'}; last contact {last})",
                )
            case fx.LineDown(line_id, down, circuits):
                self._set(
                    ("line_down", line_id, ""),
                    down,
                    f"line {self._lines.name(line_id)} is down: none of its {circuits} circuits works; "
                    "messages are queued",
                )
            case fx.Resubscribe(line_id):
                for url in self._links.circuit_urls(line_id):
                    if self._links.link(url).resubscribe():
                        name = self._lines.name(line_id)
                        log.info("line %s: gap open; subscribed again at relay %s", name, shown(url))
            case fx.GapOpen(line_id, open_, age):
                self._set(
                    ("sequence_gap", line_id, ""),
                    open_,
                    f"line {self._lines.name(line_id)}: a frame is missing and later ones are held "
                    f"(gap open for {age:.0f} s)",
                )
            case _:
                raise AssertionError(f"the monitor has no rule for {effect!r}")

    def _set(self, key: tuple[str, bytes, str], active: bool, message: str) -> None:
        """Raise or clear an alarm when its condition changed since last said."""
        if self._reported.get(key, False) == active:
            return
        kind, line_id, subject = key
        if active:
            self._alarms.raise_alarm(kind, line_id, subject, message)
        else:
            self._alarms.clear_alarm(kind, line_id, subject)
        self._reported[key] = active

    def clear_deadline(self, line_id: bytes, seq: int) -> None:
        self._set(("deadline_passed", line_id, str(seq)), False, "")

    # ---- end-to-end recovery and deadlines (``proto.engine.recovery``) -----------------------

    def overdue_messages(self, now: float) -> list[tuple[bytes, int, str, float]]:
        """Sent messages whose acknowledgement deadline passed, not yet escalated."""
        out = []
        for live in self._lines.all():
            deadlines = self._config.deadlines_for(live.row.name)
            out += [o for o in self._store.overdue(now, deadlines) if o[0] == live.line_id]
        return out

    def _mark_escalated(self, line_id: bytes, seq: int) -> None:
        with self._store.transaction():
            self._store.mark_escalated(line_id, seq, self._clock.now())
