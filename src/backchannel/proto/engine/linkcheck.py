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
The line is down when all its circuits are. Changes of state become alarms
(raised by the station's monitor), raised once and cleared once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Health(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass
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


@dataclass
class LineWatch:
    """What the station tracks per line for link tests (in memory; rebuilt after a restart)."""

    circuits: dict[str, CircuitHealth] = field(default_factory=dict)
    next_test_at: float = 0.0
    next_test_id: int = 1
    #: our tests in flight: test id -> monotonic send time
    tests_sent: dict[int, float] = field(default_factory=dict)
    #: the peer's tests we must answer: test id -> (first copy at, circuits seen so far)
    to_answer: dict[int, tuple[float, set[str]]] = field(default_factory=dict)
    #: sequence numbers of received tests and answers, so later copies still count
    test_seqs: dict[int, int] = field(default_factory=dict)  # seq -> peer's test id
    reply_seqs: dict[int, float] = field(default_factory=dict)  # seq -> when our test was sent
    state: Health = Health.UP
    gap_since: float | None = None
    next_checkpoint_at: float = 0.0
    #: when we last sent a link test on this line
    last_test_at: float | None = None

    def circuit(self, url: str, now: float) -> CircuitHealth:
        if url not in self.circuits:
            self.circuits[url] = CircuitHealth(url, since=now, connection_changed=now)
        return self.circuits[url]

    def copy_arrived(self, url: str, seq: int, now: float) -> None:
        """An authenticated copy of frame ``seq`` arrived through ``url`` (first or not)."""
        circuit = self.circuit(url, now)
        circuit.last_in = now
        if seq in self.test_seqs:
            answer = self.to_answer.get(self.test_seqs[seq])
            if answer is not None:
                answer[1].add(url)
        if seq in self.reply_seqs:
            circuit.rtt = now - self.reply_seqs[seq]

    def test_received(self, test_id: int, seq: int, url: str, now: float, interval: float) -> None:
        self.test_seqs[seq] = test_id
        self.to_answer[test_id] = (now, {url})
        trim(self.test_seqs)

    def reply_received(
        self,
        test_id: int,
        seq: int,
        circuits: tuple[str, ...],
        held: float,
        now: float,
        url: str | None = None,
    ) -> None:
        """The peer's answer to our test; ``url`` is the circuit its first copy came through."""
        sent = self.tests_sent.pop(test_id, None)
        if sent is not None:
            # The round trip of a circuit ends when the answer's copy arrives through it; the
            # time the peer deliberately held the answer back is not part of it.
            self.reply_seqs[seq] = sent + held
            trim(self.reply_seqs)
            if url is not None and url in self.circuits:
                self.circuits[url].rtt = now - (sent + held)
        for url in circuits:
            if url in self.circuits:
                self.circuits[url].last_out = now

    def due_answers(self, now: float, interval: float) -> list[tuple[int, tuple[str, ...], float]]:
        """Answers whose collection time is over: (test id, circuits seen, seconds held)."""
        due = [
            (tid, tuple(sorted(seen)), now - first)
            for tid, (first, seen) in self.to_answer.items()
            if first + reply_delay(interval) <= now
        ]
        for tid, _, _ in due:
            del self.to_answer[tid]
        return due


def trim(mapping: dict[int, int] | dict[int, float], keep: int = 64) -> None:
    while len(mapping) > keep:
        del mapping[next(iter(mapping))]
