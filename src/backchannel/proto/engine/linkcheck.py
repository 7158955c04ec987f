"""Link tests and circuit health: is each path of each line working, and how fast?

Theory of operation
-------------------
Every frame of a line goes out on every circuit, and the receiving station sees each copy
arrive (it keeps the first and drops the others *after* authenticating them), so every
authenticated copy that arrives through a circuit is proof that the circuit carries traffic
from the peer to us. That is *contact in*.

A *link test* is an ordinary sequenced payload, sent every ``link_test_interval`` seconds,
so it is encrypted, ordered and recorded in the transcript like everything else. The peer
waits a quarter interval (at most 2 s) to let copies arrive on the slower circuits, then
answers with the list of circuits that delivered a copy of the test: *contact out* for each
of them. The round trip time of a circuit is the time from sending a test until the copy of
its answer arrives through that circuit.

From these times and the state of our own connection to each relay, :func:`assess` (pure)
decides per circuit: *up* (contact both ways within two intervals), *degraded* (one way
only), *down* (none, or the relay connection has been lost for longer than a grace period).
The line is down when all its circuits are. Changes of state become alarm effects
(:mod:`.ticking`), which the station's monitor raises once and clears once.

The watch is a value, not an object: :class:`LineWatch` is frozen and part of the line's
:class:`~backchannel.proto.engine.core.LineCore`; each event (a copy arrived, a test, an answer,
a relay connection lost, the line's circuits changed) is a function here that returns the new
watch, so the monitor in ``station/`` only feeds events and keeps what comes back. It is in
memory only and rebuilt after a restart (:func:`start`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from backchannel.clock import ms
from backchannel.proto.engine import effects as fx

K = TypeVar("K")
V = TypeVar("V")

#: How many test and answer sequence numbers (and tests in flight) a watch remembers.
KEEP = 64


class Health(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True)
class CircuitHealth:
    url: str
    since: float  # when we started watching this circuit
    connected: bool = False
    connection_changed: float = 0.0
    last_in: float | None = None
    last_out: float | None = None
    rtt: float | None = None
    state: Health = Health.UP
    #: Until then the station does not connect to this relay (it flooded us; ``station.flood``).
    suspended_until: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "state": self.state.value,
            "connected": self.connected,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 2),
            "last_in": self.last_in,
            "last_out": self.last_out,
            "suspended_until": self.suspended_until or None,
        }


def disconnect_grace(interval: float) -> float:
    """How long a lost relay connection may last before its circuit counts as down."""
    return min(interval / 2, 30.0)


def reply_delay(interval: float) -> float:
    """How long to collect copies of a link test on slower circuits before answering."""
    return min(interval / 4, 2.0)


def assess(health: CircuitHealth, now: float, interval: float) -> Health | None:
    """The state of one circuit at ``now``; None while it is too early to say (just started)."""
    if now < health.suspended_until:
        return Health.DOWN
    if not health.connected and now - health.connection_changed >= disconnect_grace(interval):
        return Health.DOWN
    horizon = 2 * interval
    fresh_in = health.last_in is not None and now - health.last_in <= horizon
    fresh_out = health.last_out is not None and now - health.last_out <= horizon
    if fresh_in and fresh_out:
        return Health.UP
    if now - health.since <= horizon:
        return Health.UP if fresh_in or fresh_out else None  # too early to judge
    if fresh_in or fresh_out:
        return Health.DEGRADED
    return Health.DOWN


def line_health(circuits: list[Health]) -> Health:
    if any(c is Health.UP for c in circuits):
        return Health.UP if all(c is Health.UP for c in circuits) else Health.DEGRADED
    if any(c is Health.DEGRADED for c in circuits):
        return Health.DEGRADED
    return Health.DOWN


# ---- small immutable maps: tuples of (key, value) pairs, oldest first -------------------------


def lookup(pairs: tuple[tuple[K, V], ...], key: K) -> V | None:
    return next((v for k, v in pairs if k == key), None)


def put(pairs: tuple[tuple[K, V], ...], key: K, value: V, keep: int | None = None) -> tuple[tuple[K, V], ...]:
    """``pairs`` with ``key`` set (in place if present, as a dict does), the oldest beyond
    ``keep`` dropped."""
    if any(k == key for k, _ in pairs):
        out = tuple((k, value if k == key else v) for k, v in pairs)
    else:
        out = (*pairs, (key, value))
    return out if keep is None or len(out) <= keep else out[len(out) - keep :]


def without(pairs: tuple[tuple[K, V], ...], key: K) -> tuple[tuple[K, V], ...]:
    return tuple((k, v) for k, v in pairs if k != key)


@dataclass(frozen=True)
class LineWatch:
    """What the engine tracks per line for link tests and health (in memory; rebuilt after a
    restart). Immutable: every event below returns a new watch."""

    circuits: tuple[CircuitHealth, ...] = ()
    next_test_at: float = 0.0
    next_test_id: int = 1
    #: our tests in flight: test id -> monotonic send time
    tests_sent: tuple[tuple[int, float], ...] = ()
    #: the peer's tests we must answer: test id -> (first copy at, circuits seen so far)
    to_answer: tuple[tuple[int, tuple[float, frozenset[str]]], ...] = ()
    #: sequence numbers of received tests and answers, so later copies still count
    test_seqs: tuple[tuple[int, int], ...] = ()  # seq -> peer's test id
    reply_seqs: tuple[tuple[int, float], ...] = ()  # seq -> when our test was sent
    state: Health = Health.UP
    gap_since: float | None = None
    next_checkpoint_at: float = 0.0
    #: when we last sent a link test on this line
    last_test_at: float | None = None
    #: when the line's circuits were last subscribed again because of an open gap
    resubscribed_at: float | None = None

    def circuit(self, url: str) -> CircuitHealth | None:
        return next((c for c in self.circuits if c.url == url), None)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(c.url for c in self.circuits)

    def with_circuit(self, health: CircuitHealth) -> LineWatch:
        """The watch with ``health`` in place of its circuit's (added last when new)."""
        if self.circuit(health.url) is None:
            return replace(self, circuits=(*self.circuits, health))
        return replace(self, circuits=tuple(health if c.url == health.url else c for c in self.circuits))

    def watching(self, url: str, now: float) -> tuple[LineWatch, CircuitHealth]:
        """The watch with circuit ``url`` in it (watched from ``now`` if new), and the circuit."""
        found = self.circuit(url)
        if found is not None:
            return self, found
        fresh = CircuitHealth(url, since=now, connection_changed=now)
        return replace(self, circuits=(*self.circuits, fresh)), fresh


# ---- events ------------------------------------------------------------------------------


def start(now: float, interval: float, circuits: Mapping[str, bool]) -> LineWatch:
    """A new watch over a line whose circuits are ``circuits`` (url -> relay connected): the
    first test one interval (at most a second) from now, test ids from our clock so they do
    not repeat across restarts."""
    watch = LineWatch(next_test_at=now + min(interval, 1.0), next_test_id=ms(now))
    for url, connected in circuits.items():
        watch, circuit = watch.watching(url, now)
        watch = watch.with_circuit(replace(circuit, connected=connected))
    return watch


def contact_in(watch: LineWatch, url: str, now: float) -> LineWatch:
    """An authenticated frame that carries no entry (cover) arrived through ``url``: only the
    peer holds the circuit's key, so it proves the circuit works inbound."""
    watch, circuit = watch.watching(url, now)
    return watch.with_circuit(replace(circuit, last_in=now))


def copy_arrived(watch: LineWatch, url: str, seq: int, now: float) -> LineWatch:
    """An authenticated copy of frame ``seq`` arrived through ``url`` (first or not)."""
    watch, circuit = watch.watching(url, now)
    circuit = replace(circuit, last_in=now)
    test_id = lookup(watch.test_seqs, seq)
    if test_id is not None:
        answer = lookup(watch.to_answer, test_id)
        if answer is not None:
            watch = replace(watch, to_answer=put(watch.to_answer, test_id, (answer[0], answer[1] | {url})))
    sent = lookup(watch.reply_seqs, seq)
    if sent is not None:
        circuit = replace(circuit, rtt=now - sent)
    return watch.with_circuit(circuit)


def test_received(watch: LineWatch, test_id: int, seq: int, url: str | None, now: float) -> LineWatch:
    """The peer's link test ``test_id`` (frame ``seq``), its first copy through ``url``."""
    return replace(
        watch,
        test_seqs=put(watch.test_seqs, seq, test_id, KEEP),
        to_answer=put(watch.to_answer, test_id, (now, frozenset() if url is None else frozenset({url}))),
    )


def reply_received(
    watch: LineWatch,
    test_id: int,
    seq: int,
    circuits: tuple[str, ...],
    held: float,
    now: float,
    url: str | None = None,
) -> LineWatch:
    """The peer's answer to our test; ``url`` is the circuit its first copy came through."""
    sent = lookup(watch.tests_sent, test_id)
    if sent is not None:
        watch = replace(watch, tests_sent=without(watch.tests_sent, test_id))
        # The round trip of a circuit ends when the answer's copy arrives through it; the
        # time the peer deliberately held the answer back is not part of it.
        watch = replace(watch, reply_seqs=put(watch.reply_seqs, seq, sent + held, KEEP))
        first = None if url is None else watch.circuit(url)
        if first is not None:
            watch = watch.with_circuit(replace(first, rtt=now - (sent + held)))
    for out in circuits:
        found = watch.circuit(out)
        if found is not None:
            watch = watch.with_circuit(replace(found, last_out=now))
    return watch


Answer = tuple[int, tuple[str, ...], float]


def due_answers(watch: LineWatch, now: float, interval: float) -> tuple[LineWatch, list[Answer]]:
    """Answers whose collection time is over: (test id, circuits seen, seconds held), and the
    watch without them (each test is answered once)."""
    due = [
        (tid, tuple(sorted(seen)), now - first)
        for tid, (first, seen) in watch.to_answer
        if first + reply_delay(interval) <= now
    ]
    if not due:
        return watch, []
    answered = {tid for tid, _, _ in due}
    return replace(watch, to_answer=tuple(p for p in watch.to_answer if p[0] not in answered)), due


def link_state(watch: LineWatch, url: str, up: bool, now: float) -> LineWatch:
    """Our connection to relay ``url`` came up or went down."""
    found = watch.circuit(url)
    if found is None or found.connected == up:
        return watch
    return watch.with_circuit(replace(found, connected=up, connection_changed=now))


def suspend(watch: LineWatch, url: str, until: float) -> LineWatch:
    """Relay ``url`` flooded the station, which does not connect to it until ``until``: its
    circuit is down at once."""
    found = watch.circuit(url)
    if found is None:
        return watch
    return watch.with_circuit(replace(found, suspended_until=until, state=Health.DOWN))


def gap(watch: LineWatch, open_: bool, now: float) -> LineWatch:
    """Frames are held ahead of a gap (``open_``; its age counts from the first time) or not."""
    if open_ and watch.gap_since is None:
        return replace(watch, gap_since=now)
    if not open_ and watch.gap_since is not None:
        return replace(watch, gap_since=None)
    return watch


def follow_circuits(
    watch: LineWatch, line_id: bytes, circuits: Mapping[str, bool], now: float
) -> tuple[LineWatch, list[fx.Effect]]:
    """The watch over the line's new set of circuits (url -> relay connected), and the alarms
    of the circuits no longer watched cleared."""
    removed: list[fx.Effect] = [
        fx.CircuitDown(line_id, url, False) for url in watch.urls if url not in circuits
    ]
    watch = replace(watch, circuits=tuple(c for c in watch.circuits if c.url in circuits))
    for url, connected in circuits.items():
        watch, circuit = watch.watching(url, now)
        watch = watch.with_circuit(replace(circuit, connected=connected))
    return watch, removed
