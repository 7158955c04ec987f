"""Changing a line's circuits in band: add a relay, remove one; both stations apply it.

Adding: we create our own mailbox on the new relay and send its send capability in a
``circuits`` payload (sealed, ordered and recorded like any entry); the peer adds it and
answers with its own mailbox there. Removing: we tell the peer, then stop using the relay
ourselves. A received change is bounded: never more than 8 circuits, never the last one.

A relay the *peer* adds is judged by the station's relay policy (:mod:`relay_policy`): added
at once, held for a local operator's approval (kept on disk; approved or rejected later, even
after a restart), or refused. A refusal or rejection is told to the peer as a removal of that
relay, which retires the peer's unanswered mailbox there. A circuit the peer removes closes
the link to its relay when nothing else uses it.

When *we* remove a circuit, our own mailbox on that relay is *retired*, not forgotten: we keep
reading it (for ``RETIRED_READ_SECONDS``, also across restarts), because a peer that refused the
removal (two operators removing the two circuits of a line at once) keeps sending there. When
the *peer* removes one, it sends nothing more there once it has sealed the change, and every
frame before the change also went on the other circuits, so our mailbox there is forgotten (the
running connection still drains it). Either way the mailbox no longer counts as the line's
circuit, so the relay can be added again later, with fresh mailboxes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Set

from backchannel.aio import TaskSet
from backchannel.errors import BackchannelError, InvalidArgument
from backchannel.proto.engine import circuits as rules
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine.circuits import Admission, CircuitView
from backchannel.proto.invitation import MailboxCapability
from backchannel.proto.payloads import Circuits
from backchannel.station.alarms import Alarms
from backchannel.station.config import StationConfig
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.liveline import LiveLine
from backchannel.station.monitor import Monitor
from backchannel.station.outbox import Outbox
from backchannel.station.pairing import relay_list
from backchannel.station.reading import Views
from backchannel.station.relay_policy import Decision, decide
from backchannel.station.relay_url import named, shown
from backchannel.station.store import Store
from backchannel.station.views import LineView

log = logging.getLogger("backchannel.station")

#: How long a station keeps reading its mailbox on a relay it removed from a line (14 days, a
#: relay's default expiry): long enough for any frame sent there before the removal.
RETIRED_READ_SECONDS = 14 * 24 * 3600.0


class CircuitChanges:
    def __init__(
        self,
        lines: Lines,
        links: Links,
        outbox: Outbox,
        monitor: Monitor,
        alarms: Alarms,
        views: Views,
        store: Store,
        config: StationConfig,
    ) -> None:
        self._lines = lines
        self._links = links
        self._outbox = outbox
        self._monitor = monitor
        self._alarms = alarms
        self._views = views
        self._store = store
        self._config = config
        self._clock = lines.clock
        self._rng = lines.rng
        #: Answers to the peer's circuit changes, run after the commit that accepted them.
        self._tasks = TaskSet("circuit changes")

    async def close(self) -> None:
        await self._tasks.close()

    async def add(self, line: str, relay: str) -> LineView:
        """Add a circuit through another relay: our mailbox there, offered to the peer in-band."""
        live = self._lines.find(line)
        (url,) = relay_list(relay)
        if any(u == url for lid, u, _, _ in self._store.mailboxes() if lid == live.line_id):
            raise InvalidArgument(f"line {live.row.name!r} already has a circuit through {shown(url)}")
        recv_id, recv_seed, send_id, send_seed = await self._links.new_mailbox(url)
        with self._lines.mutation():
            self._store.add_mailbox(
                live.line_id, url, recv_id, self._lines.atrest.seal(recv_seed, b"recv-key" + recv_id)
            )
            change = Circuits((MailboxCapability(url, send_id, send_seed),), ())
            seq = self._outbox.send_payload(live.line_id, change, "circuits", enqueue=False)
        self._outbox.enqueue([(live.line_id, seq)])
        self._links.subscribe(url, recv_id, recv_seed, live.line_id)
        return self._views.line_view(live)

    async def remove(self, line: str, relay: str) -> LineView:
        """Stop using a relay for this line, on both sides (told to the peer in-band)."""
        live = self._lines.find(line)
        circuits = self._links.circuit_urls(live.line_id)
        matches = named(relay, circuits)
        rules.check_removal(live.row.name, shown(relay), len(matches), len(circuits))
        (relay,) = matches
        with self._lines.mutation():  # tell the peer and stop using it here, in one transaction
            seq = self._outbox.send_payload(live.line_id, Circuits((), (relay,)), "circuits", enqueue=False)
            self._store.remove_circuit(live.line_id, relay, self._clock.now(), retire=True)
        self._links.drop_circuit(live.line_id, relay)
        self._outbox.enqueue([(live.line_id, seq)])
        self._monitor.circuits_changed(live.line_id)
        return self._views.line_view(live)

    def apply(self, live: LiveLine, change: Circuits, after: list[Callable[[], object]]) -> None:
        """The peer's circuit change (inside the receive transaction): the engine decides
        (:func:`backchannel.proto.engine.circuits.receive_change`), this applies its effects."""
        line_id = live.line_id
        store = self._store
        # From the store, not from memory: earlier changes in the same batch count too.
        view = CircuitView(
            ours=frozenset(url for lid, url, _, _ in store.mailboxes() if lid == line_id),
            theirs=frozenset(url for _, url, _, _ in store.peer_mailboxes(line_id)),
            proposed=frozenset(p.url for p in store.proposals(line_id)),
            proposals=len(store.proposals(line_id)),
            trusted=frozenset(self.trusted_relays()),
        )
        for effect in rules.receive_change(line_id, change, view, self._policy):
            self._apply(live, effect, after)

    def _policy(self, url: str, trusted: Set[str]) -> tuple[Admission, str]:
        """The relay policy's verdict on a relay the peer proposes (``station.relay_policy``),
        and the station's bound on its relay connections."""
        config = self._config
        decision, why = decide(url, config.relay_policy, trusted, config.allow_private_relays)
        if (
            decision is Decision.ACCEPT
            and not self._links.has(url)
            and self._links.links_open() >= config.max_links
        ):
            decision, why = Decision.REFUSE, f"the station keeps at most {config.max_links} relay connections"
        return Admission(decision.value), why

    def _apply(self, live: LiveLine, effect: fx.Effect, after: list[Callable[[], object]]) -> None:
        line_id, store, now = live.line_id, self._store, self._clock.now()
        name, peer = live.row.name, live.row.peer_name
        match effect:
            case fx.Count(counter, n):
                store.count(counter, n)
            case fx.AcceptCircuit(_, cap, answer):
                self._accept(live, cap, answer, after)
            case fx.HoldProposal(_, cap):
                proposal_id = self._rng.bytes(6).hex()
                sealed = self._lines.atrest.seal(cap.send_key, b"send-key" + cap.send_id)
                store.add_proposal(proposal_id, line_id, cap.url, cap.send_id, sealed, now)
                message = (
                    f"line {name}: {peer} proposes a circuit through relay {cap.url}; it is held for "
                    f"approval (`backchannel circuit approve {proposal_id}` or `reject {proposal_id}`)"
                )
                after.append(
                    functools.partial(self._alarms.raise_alarm, "circuit_proposed", line_id, cap.url, message)
                )
            case fx.DeclineCircuit(_, url, why):
                log.warning("line %s: refused the circuit %s proposed through %s: %s", name, peer, url, why)
                self._decline(live, url, after)
            case fx.WithdrawProposal(_, url):
                store.delete_proposals(line_id, url)
                after.append(functools.partial(self._alarms.clear_alarm, "circuit_proposed", line_id, url))
            case fx.RetireCircuit(_, url):
                store.remove_circuit(line_id, url, now, retire=True)
                log.warning("line %s: %s declined the circuit through %s", name, peer, url)
            case fx.DropCircuit(_, url):
                send_id = self._links.send_id(line_id, url)
                recv_ids = [r for lid, u, r, _ in store.mailboxes() if lid == line_id and u == url]
                store.remove_circuit(line_id, url, now, retire=False)
                after.append(functools.partial(self._links.forget_circuit, line_id, url, send_id, recv_ids))
            case fx.CircuitsChanged():
                after.append(functools.partial(self._monitor.circuits_changed, line_id))
            case _:
                raise AssertionError(f"the circuit shell has no rule for {effect!r}")

    def _accept(
        self, live: LiveLine, cap: MailboxCapability, answer: bool, after: list[Callable[[], object]]
    ) -> None:
        line_id = live.line_id
        self._store.add_peer_mailbox(
            line_id, cap.url, cap.send_id, self._lines.atrest.seal(cap.send_key, b"send-key" + cap.send_id)
        )
        after.append(functools.partial(self._links.add_sender, line_id, cap.url, cap.send_id, cap.send_key))
        if answer:  # answer with our own mailbox on that relay
            after.append(functools.partial(self._answer, live.row.name, cap.url))

    def _decline(self, live: LiveLine, url: str, after: list[Callable[[], object]]) -> None:
        """Tell the peer we will not use ``url`` (a removal of a circuit we never had, §9.2)."""
        seq = self._outbox.send_payload(live.line_id, Circuits((), (url,)), "circuits", enqueue=False)
        after.append(functools.partial(self._outbox.enqueue, [(live.line_id, seq)]))

    def trusted_relays(self) -> set[str]:
        """Relays this station chose or uses: its configured relays and those of its lines."""
        store = self._store
        urls = {url for _, url, _, _ in store.mailboxes() + store.mailboxes(retired=True)}
        urls |= {url for _, url, _, _ in store.peer_mailboxes()}
        return urls | set(self._config.relays)

    # ---- proposals held for approval ------------------------------------------------------

    def pending(self) -> list[dict[str, object]]:
        """Circuits the peer proposed that wait for an operator's approval."""
        return [
            {
                "id": pid,
                "line": self._lines.name(line_id),
                "peer": self._lines.peer_name(line_id),
                "url": url,
                "proposed_at": at,
            }
            for pid, line_id, url, _, _, at in self._store.proposals()
        ]

    def _proposal(self, proposal_id: str) -> tuple[str, bytes, str, bytes, bytes, float]:
        found = [p for p in self._store.proposals() if p[0] == proposal_id]
        if not found or found[0][1] not in self._lines:
            raise InvalidArgument(
                f"there is no proposed circuit {proposal_id!r}; `backchannel circuit pending` lists them"
            )
        return found[0]

    async def approve(self, proposal_id: str) -> LineView:
        """Add the circuit the peer proposed, and answer with our own mailbox on that relay."""
        _, line_id, url, send_id, sealed, _ = self._proposal(proposal_id)
        live = self._lines[line_id]
        rules.check_approval(live.row.name, url, set(self._links.circuit_urls(line_id)))
        cap = MailboxCapability(url, send_id, self._lines.atrest.open(sealed, b"send-key" + send_id))
        ours = {u for lid, u, _, _ in self._store.mailboxes() if lid == line_id}
        after: list[Callable[[], object]] = []
        with self._lines.mutation():
            self._store.delete_proposal(proposal_id)
            self._accept(live, cap, answer=False, after=after)
        for action in after:
            action()
        self._alarms.clear_alarm("circuit_proposed", line_id, url)
        self._monitor.circuits_changed(line_id)
        log.warning("line %s: the circuit through %s proposed by the peer was approved", live.row.name, url)
        if url not in ours:
            try:
                await self.add(live.row.name, url)
            except BackchannelError as exc:
                raise type(exc)(
                    f"approved, and sending there; but our own mailbox on {url} could not be made yet "
                    f"({exc}); retry with `backchannel circuit add {live.row.name} {url}`"
                ) from exc
        return self._views.line_view(live)

    def reject(self, proposal_id: str) -> dict[str, object]:
        """Refuse the circuit the peer proposed; the peer is told (a removal, §9.2)."""
        _, line_id, url, _, _, _ = self._proposal(proposal_id)
        live = self._lines[line_id]
        after: list[Callable[[], object]] = []
        with self._lines.mutation():
            self._store.delete_proposal(proposal_id)
            self._store.count("circuit_rejected")
            self._decline(live, url, after)
        for action in after:
            action()
        self._alarms.clear_alarm("circuit_proposed", line_id, url)
        return {"id": proposal_id, "line": live.row.name, "url": url, "rejected": True}

    def _answer(self, line: str, url: str) -> None:
        """After the commit: offer our own mailbox on the relay the peer added."""

        async def guarded() -> None:
            try:
                live = self._lines.find(line)
                if url not in self._links.circuit_urls(live.line_id):
                    return  # removed again meanwhile: no connection to a relay the line left
                await self.add(line, url)
            except BackchannelError as exc:
                log.warning("circuit change failed: %s", exc)

        self._tasks.spawn(guarded(), f"circuit answer {shown(url)}")
