"""Circuit changes as the engine decides them: the bounds of a line's set of relays.

Theory of operation
-------------------
A ``circuits`` payload (PROTOCOL §9.2) adds relays to a line (the sender's mailboxes there)
or removes them, by URL. Both stations apply it, and the receiving one bounds it:

- never more than ``MAX_RELAYS`` (8) circuits: an add beyond is dropped and counted;
- never the last circuit: a removal that would leave none is refused and counted;
- a relay the peer proposes is judged by the station's relay policy (the shell's
  ``station.relay_policy``, handed in as ``policy``): added at once, held for a local
  operator's approval (at most ``MAX_RELAYS`` proposals per line), or refused; a refusal is
  told to the peer as a removal of that relay;
- a removal of a relay whose proposal is still held withdraws the proposal; a removal of a
  relay where only *we* have a mailbox is the peer declining our proposal, and our mailbox
  there is retired.

:func:`receive_change` decides all of it from what the shell read (:class:`CircuitView`) and
returns effects; the operator's own commands are bounded by :func:`check_removal` and
:func:`check_approval`. Nothing here touches a relay or the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass
from enum import StrEnum

from backchannel.errors import InvalidArgument
from backchannel.proto.engine import effects as fx
from backchannel.proto.invitation import MAX_RELAYS
from backchannel.proto.payloads import Circuits

__all__ = ["Admission", "CircuitView", "Policy", "check_approval", "check_removal", "receive_change"]


class Admission(StrEnum):
    """The relay policy's verdict on a relay the peer proposes."""

    ACCEPT = "accept"
    ASK = "ask"
    REFUSE = "refuse"


#: (relay url, relays this station trusts now) -> (verdict, why). Pure: the shell binds its
#: settings and its count of open relay connections.
Policy = Callable[[str, Set[str]], tuple[Admission, str]]


@dataclass(frozen=True)
class CircuitView:
    """What the engine reads of one line's circuits, from the store inside the transaction."""

    #: relays where we have a mailbox for this line (not retired)
    ours: frozenset[str]
    #: relays where the peer has a mailbox we send to: the line's circuits
    theirs: frozenset[str]
    #: relays the peer proposed that are held for approval on this line
    proposed: frozenset[str]
    #: how many proposals are held on this line (a relay proposed twice counts twice)
    proposals: int
    #: relays this station trusts (its settings, every relay its lines use or used)
    trusted: frozenset[str]


def receive_change(line_id: bytes, change: Circuits, view: CircuitView, policy: Policy) -> list[fx.Effect]:
    """The effects of the peer's circuit change, in the order the shell applies them."""
    effects: list[fx.Effect] = []
    circuits = set(view.theirs)
    proposed = set(view.proposed)
    proposals = view.proposals
    trusted = set(view.trusted)
    for cap in change.add:
        if cap.url not in circuits:
            if len(circuits) >= MAX_RELAYS:
                effects.append(fx.Count("circuit_limit"))  # a peer may not grow a line past 8 circuits
                continue
            verdict, why = policy(cap.url, frozenset(trusted))
            if verdict is Admission.ASK and proposals < MAX_RELAYS:
                effects += [fx.HoldProposal(line_id, cap), fx.Count("circuit_held")]
                proposed.add(cap.url)
                proposals += 1
                continue
            if verdict is not Admission.ACCEPT:
                if verdict is Admission.ASK:
                    why = f"already {MAX_RELAYS} proposals await approval on this line"
                effects += [fx.Count("circuit_refused_policy"), fx.DeclineCircuit(line_id, cap.url, why)]
                continue
        circuits.add(cap.url)
        trusted.add(cap.url)
        effects.append(fx.AcceptCircuit(line_id, cap, answer=cap.url not in view.ours))
    for url in change.remove:
        if url in proposed:  # the peer withdrew it before approval
            proposed.discard(url)
            effects += [fx.WithdrawProposal(line_id, url), fx.Count("circuit_withdrawn")]
            continue
        if url not in circuits and url in view.ours:
            # The peer declined our proposal: it will not use this relay, so ours there is no
            # circuit. Retired (read a while), as for a removal we made ourselves.
            effects += [fx.RetireCircuit(line_id, url), fx.Count("circuit_declined")]
            continue
        if url not in circuits or len(circuits) == 1:
            effects.append(fx.Count("circuit_refused"))  # never remove the last circuit of a line
            continue
        circuits.discard(url)
        effects.append(fx.DropCircuit(line_id, url))
    effects.append(fx.CircuitsChanged(line_id))
    return effects


def check_removal(line: str, relay: str, matches: int, circuits: int) -> None:
    """Whether the operator may remove the circuit named ``relay`` (``matches`` circuits of the
    line's ``circuits`` answer to that name); raises ``InvalidArgument`` if not."""
    if not matches:
        raise InvalidArgument(f"line {line!r} has no circuit through {relay}")
    if matches > 1:
        raise InvalidArgument(f"several circuits of line {line!r} match {relay}; give the full URL")
    if circuits == 1:
        raise InvalidArgument("a line keeps at least one circuit; add another before removing this one")


def check_approval(line: str, url: str, circuits: Set[str]) -> None:
    """Whether the operator may approve the peer's proposal of ``url``: still within 8 circuits."""
    if url not in circuits and len(circuits) >= MAX_RELAYS:
        raise InvalidArgument(f"line {line!r} already has {MAX_RELAYS} circuits; remove one first")
