"""The station's watch over its lines: link tests, circuit health, deadlines, gaps, alarms.

Theory of operation
-------------------
One task ticks about once a second (more often when the link-test interval is short). On
each tick, for every established line, it sends a link test when one is due, answers the
peer's tests whose collection time is over, re-assesses every circuit and the line
(:func:`backchannel.proto.engine.linkcheck.assess`), and turns changes into alarms. It also
escalates sent messages whose precedence deadline passed without an *acknowledged*
receipt, and raises an alarm when a sequence gap (frames held because an earlier one is
missing) has stayed open for longer than a link-test interval. Before that alarm, at half the
interval (and again at each doubling of the gap's age), it SUBSCRIBEs again on every circuit
of the line: a relay then pushes every frame it holds unacknowledged, so a frame a relay
stored but never pushed heals the gap without an operator (issue 14).

Alarms are raised on a change of state, not on every tick; what the store says is open is
the starting point after a restart, so an alarm open before a restart is cleared once the
condition is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from backchannel.aio import TaskSet
from backchannel.clock import ms
from backchannel.errors import BackchannelError
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import ticking
from backchannel.proto.engine.linkcheck import Health, LineWatch, assess, line_health
from backchannel.proto.engine.recovery import PeerReport, gap_due
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


class _TickLedger:
    """The tick's read-only questions, answered by the store and the recorder."""

    def __init__(self, store: Store, recorder: Recorder) -> None:
        self.relayed_times = store.relayed_times
        self.last_checkpoint_sent = recorder.last_checkpoint_sent


def tick_seconds(interval: float) -> float:
    return max(0.05, min(1.0, interval / 8))


class Monitor:
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
        self.watches: dict[bytes, LineWatch] = {}
        self._tasks = TaskSet("monitor")
        self._reported: dict[tuple[str, bytes, str], bool] = {}
        #: line -> when its circuits were last subscribed again because of an open gap
        self._resubscribed: dict[bytes, float] = {}
        #: Other parts' periodic checks, run on every tick (the pairing timeout).
        self.on_tick: list[Callable[[], None]] = []

    async def start(self) -> None:
        for alarm in self._alarms.list():
            if alarm.line is not None:
                line = self._lines.find_id(alarm.line)
                if line is not None:
                    self._reported[(alarm.kind, line, alarm.subject)] = True
        self._tasks.spawn(self._run(), "monitor")

    async def stop(self) -> None:
        await self._tasks.close()

    def watch(self, line_id: bytes) -> LineWatch:
        watch = self.watches.get(line_id)
        if watch is None:
            now = self._clock.now()
            watch = LineWatch(next_test_at=now + min(self._interval, 1.0), next_test_id=ms(now))
            live = self._lines.get(line_id)
            if live is not None:
                self.init_peer(live)
            for url in self._links.circuit_urls(line_id):
                circuit = watch.circuit(url, now)
                circuit.connected = self._links.connected(url)
            self.watches[line_id] = watch
        return watch

    # ---- events from the station ------------------------------------------------------------

    def on_link_state(self, url: str, up: bool) -> None:
        now = self._clock.now()
        for watch in self.watches.values():
            circuit = watch.circuits.get(url)
            if circuit is not None and circuit.connected != up:
                circuit.connected = up
                circuit.connection_changed = now

    def relay_flooded(self, url: str, useless: int, until: float) -> None:
        """The station suspended a relay that flooded it: its circuits are down, now."""
        for line_id in self._lines.established():
            circuit = self.watch(line_id).circuits.get(url)
            if circuit is None:
                continue
            circuit.suspended_until = until
            circuit.state = Health.DOWN
            self._set(
                ("circuit_down", line_id, url),
                True,
                f"circuit {url} of line {self._lines.name(line_id)} is down: relay {url} "
                f"flooded this station with {useless} frames it had to drop; the station does not "
                f"connect to it for {until - self._clock.now():.0f} s",
            )

    def copy_arrived(self, line_id: bytes, url: str | None, seq: int) -> None:
        if url is not None and url in self._links.circuit_urls(line_id):  # not a removed circuit
            self.watch(line_id).copy_arrived(url, seq, self._clock.now())

    def test_received(self, line_id: bytes, test_id: int, seq: int, url: str | None) -> None:
        watch = self.watch(line_id)
        watch.test_received(test_id, seq, url or "", self._clock.now(), self._interval)
        if url is None:
            watch.to_answer[test_id][1].discard("")

    def reply_received(self, line_id: bytes, reply: LinkTestReply, seq: int, url: str | None = None) -> None:
        watch = self.watch(line_id)
        now = self._clock.now()
        watch.reply_received(reply.test_id, seq, reply.circuits, reply.held / 1000, now, url)

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
        watch = self.watch(line_id)
        if open_ and watch.gap_since is None:
            watch.gap_since = self._clock.now()
        elif not open_:
            watch.gap_since = None

    def circuits_changed(self, line_id: bytes) -> None:
        watch = self.watch(line_id)
        now = self._clock.now()
        urls = set(self._links.circuit_urls(line_id))
        for url in list(watch.circuits):
            if url not in urls:
                del watch.circuits[url]
                self._set(("circuit_down", line_id, url), False, "")
        for url in urls:
            watch.circuit(url, now).connected = self._links.connected(url)

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
            watch = self.watch(line_id)
            live = self._lines[line_id]
            self.init_peer(live)
            core, effects = ticking.tick(live.core, watch, now, timing, self._ledger)
            live.peer = core.peer
            for effect in effects:
                self._apply(effect)
            self._assess(line_id, watch, now)
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

    def _apply(self, effect: fx.Effect) -> None:
        """Carry out one effect of the engine's tick."""
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
            case _:
                raise AssertionError(f"the monitor has no rule for {effect!r}")

    def _assess(self, line_id: bytes, watch: LineWatch, now: float) -> None:
        name = self._lines.name(line_id)
        states = []
        for url, circuit in watch.circuits.items():
            judged = assess(circuit, now, self._interval)
            if judged is None:
                continue  # too early after a start or a new circuit: say nothing yet
            circuit.state = judged
            states.append(judged)
            last = "never" if circuit.last_in is None else f"{now - circuit.last_in:.1f} s ago"
            if now < circuit.suspended_until:
                continue  # its alarm was raised when it was suspended (relay_flooded)
            self._set(
                ("circuit_down", line_id, url),
                judged is Health.DOWN,
                f"circuit {shown(url)} of line {name} is down (relay connection "
                f"{'up' if circuit.connected else 'lost'}; last contact {last})",
            )
        if states and len(states) == len(watch.circuits):
            watch.state = line_health(states)
            self._set(
                ("line_down", line_id, ""),
                watch.state is Health.DOWN,
                f"line {name} is down: none of its {len(states)} circuits works; messages are queued",
            )
        if gap_due(watch.gap_since, self._resubscribed.get(line_id), now, self._interval / 2):
            self._resubscribed[line_id] = now
            for url in self._links.circuit_urls(line_id):
                if self._links.link(url).resubscribe():
                    log.info("line %s: gap open; subscribed again at relay %s", name, shown(url))
        gap_open = watch.gap_since is not None and now - watch.gap_since > self._interval
        self._set(
            ("sequence_gap", line_id, ""),
            gap_open,
            f"line {name}: a frame is missing and later ones are held "
            f"(gap open for {0 if watch.gap_since is None else now - watch.gap_since:.0f} s)",
        )

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
