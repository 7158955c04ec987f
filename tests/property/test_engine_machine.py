"""Two line engines through a lossy, duplicating, reordering relay, with crash-restarts.

Hypothesis drives two simulated stations (``support.engine_sim``: the pure engine inside a
shell whose disk is a dict) through any interleaving of: sending messages, the relay
delivering any frame in flight (keeping a copy, so it arrives again), losing one, a station
crashing before or after an event's commit (restart = rebuild the core from what the effects
stored), and the sender resending what the peer has not confirmed. At every step a message is
stored at most once and the inbox is an in-order prefix of what the peer sent; at the end,
after the relay turns reliable and both sides resend until nothing changes, every message
arrived exactly once and in order, the *delivered* receipts cover everything, and the two
transcript heads are equal. No I/O: no sockets, no SQLite, no clock.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from support.engine_sim import SimStation, message, pair

MAX_MESSAGES = 5  # per side
CRASH = st.sampled_from(["", "", "", "before_commit", "after_commit"])


class TwoEngines(RuleBasedStateMachine):
    inviter: SimStation
    accepter: SimStation

    @initialize(seed=st.binary(min_size=4, max_size=4))
    def pair(self, seed: bytes) -> None:
        self.inviter, self.accepter, welcome = pair(seed)
        # in flight toward each station (a multiset: the relay may deliver any, any number of times)
        self.flight: dict[str, list[bytes]] = {"inviter": [], "accepter": list(welcome)}
        self.sent: dict[str, list[tuple[int, str]]] = {"inviter": [], "accepter": []}
        self.counter = 0

    def station(self, name: str) -> SimStation:
        return self.inviter if name == "inviter" else self.accepter

    def peer(self, name: str) -> str:
        return "accepter" if name == "inviter" else "inviter"

    # ---- rules -----------------------------------------------------------------------------

    @precondition(lambda self: len(self.sent["inviter"]) + len(self.sent["accepter"]) < 2 * MAX_MESSAGES)
    @rule(side=st.sampled_from(["inviter", "accepter"]), crash=CRASH)
    def send(self, side: str, crash: str) -> None:
        me = self.station(side)
        if len(self.sent[side]) >= MAX_MESSAGES:
            return
        self.counter += 1
        text = f"{side}-{self.counter}"
        seq = me.core.state.next_seq
        frames = me.send(message(text), "msg", crash)
        if crash != "before_commit":  # committed: the operator was told it is queued
            self.sent[side].append((seq, text))
        self.flight[self.peer(side)] += frames

    @precondition(lambda self: any(self.flight.values()))
    @rule(
        to=st.sampled_from(["inviter", "accepter"]),
        pick=st.integers(min_value=0, max_value=1_000),
        keep=st.booleans(),
        crash=CRASH,
    )
    def deliver(self, to: str, pick: int, keep: bool, crash: str) -> None:
        flight = self.flight[to]
        if not flight:
            return
        frame = flight[pick % len(flight)]
        committed, frames = self.station(to).receive(frame, crash)
        if committed and not keep:
            flight.remove(frame)  # acknowledged to the relay, which deletes it
        self.flight[self.peer(to)] += frames

    @precondition(lambda self: any(self.flight.values()))
    @rule(to=st.sampled_from(["inviter", "accepter"]), pick=st.integers(min_value=0, max_value=1_000))
    def lose(self, to: str, pick: int) -> None:
        flight = self.flight[to]
        if flight:
            flight.pop(pick % len(flight))

    @rule(side=st.sampled_from(["inviter", "accepter"]))
    def resend(self, side: str) -> None:
        self.flight[self.peer(side)] += self.station(side).unconfirmed()

    @rule(side=st.sampled_from(["inviter", "accepter"]))
    def crash(self, side: str) -> None:
        self.station(side).restart()

    # ---- what must hold at every step -------------------------------------------------------

    @invariant()
    def inbox_is_an_in_order_prefix_of_what_the_peer_sent(self) -> None:
        if not hasattr(self, "inviter"):
            return
        for side in ("inviter", "accepter"):
            got = sorted(self.station(side).disk.inbox.items())
            assert got == self.sent[self.peer(side)][: len(got)]

    @invariant()
    def memory_never_runs_ahead_of_the_disk_between_events(self) -> None:
        if not hasattr(self, "inviter"):
            return
        for side in ("inviter", "accepter"):
            me = self.station(side)
            assert me.core == me.disk.core

    # ---- and in the end ---------------------------------------------------------------------

    def teardown(self) -> None:
        if not hasattr(self, "inviter"):
            return
        for _ in range(50):  # the relay turns reliable; both sides resend until nothing changes
            before = (len(self.inviter.disk.entries), len(self.accepter.disk.entries))
            for side in ("inviter", "accepter"):
                self.flight[self.peer(side)] += self.station(side).unconfirmed()
            for to in ("inviter", "accepter"):
                while self.flight[to]:
                    _, frames = self.station(to).receive(self.flight[to].pop(0))
                    self.flight[self.peer(to)] += frames
            if (len(self.inviter.disk.entries), len(self.accepter.disk.entries)) == before:
                break
        for side in ("inviter", "accepter"):
            me, peer = self.station(side), self.station(self.peer(side))
            assert sorted(me.disk.inbox.items()) == self.sent[self.peer(side)]  # exactly once, in order
            assert me.disk.core.state.delivered_upto == peer.disk.core.state.next_seq - 1
            last_message = max((s for s, _ in self.sent[side]), default=0)
            assert me.disk.peer_has >= last_message  # a *delivered* receipt covers every message
            assert me.disk.held == {}
        assert self.accepter.core.established
        assert self.inviter.core.state.transcript.head() == self.accepter.core.state.transcript.head()


TwoEngines.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
test_two_engines_through_a_hostile_relay = TwoEngines.TestCase
