"""The engine's bounds on circuit changes (proto/engine/circuits.py), without a relay or a disk."""

from __future__ import annotations

from collections.abc import Set

import pytest

from backchannel.errors import InvalidArgument
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine.circuits import (
    Admission,
    CircuitView,
    check_approval,
    check_removal,
    receive_change,
)
from backchannel.proto.invitation import MAX_RELAYS, MailboxCapability
from backchannel.proto.payloads import Circuits

LINE = b"L" * 16


def url(n: int) -> str:
    return f"ws://relay{n}.example:1"


def cap(n: int) -> MailboxCapability:
    return MailboxCapability(url(n), bytes([n]) * 16, bytes([n]) * 32)


def view(
    ours: Set[str] = frozenset(),
    theirs: Set[str] = frozenset(),
    proposed: Set[str] = frozenset(),
    proposals: int | None = None,
    trusted: Set[str] = frozenset(),
) -> CircuitView:
    return CircuitView(
        frozenset(ours),
        frozenset(theirs),
        frozenset(proposed),
        len(proposed) if proposals is None else proposals,
        frozenset(trusted),
    )


def accept_all(relay: str, trusted: Set[str]) -> tuple[Admission, str]:
    return Admission.ACCEPT, "test"


def ask_all(relay: str, trusted: Set[str]) -> tuple[Admission, str]:
    return Admission.ASK, "test"


def refuse_all(relay: str, trusted: Set[str]) -> tuple[Admission, str]:
    return Admission.REFUSE, "not allowed"


def without_end(effects: list[fx.Effect]) -> list[fx.Effect]:
    assert effects[-1] == fx.CircuitsChanged(LINE)  # the health watch always follows
    return effects[:-1]


def test_an_accepted_relay_is_answered_with_our_mailbox_unless_we_have_one_there() -> None:
    effects = receive_change(LINE, Circuits((cap(2), cap(3)), ()), view(ours={url(1), url(3)}), accept_all)
    assert without_end(effects) == [
        fx.AcceptCircuit(LINE, cap(2), answer=True),
        fx.AcceptCircuit(LINE, cap(3), answer=False),
    ]


def test_a_peer_may_not_grow_a_line_past_eight_circuits() -> None:
    full = {url(n) for n in range(MAX_RELAYS)}
    effects = receive_change(LINE, Circuits((cap(20), cap(0)), ()), view(theirs=full), accept_all)
    # the new relay is dropped and counted; a relay already a circuit is simply refreshed
    assert without_end(effects) == [fx.Count("circuit_limit"), fx.AcceptCircuit(LINE, cap(0), answer=True)]


def test_the_limit_counts_the_circuits_added_earlier_in_the_same_change() -> None:
    seven = {url(n) for n in range(MAX_RELAYS - 1)}
    effects = receive_change(LINE, Circuits((cap(20), cap(21)), ()), view(theirs=seven), accept_all)
    assert without_end(effects) == [fx.AcceptCircuit(LINE, cap(20), answer=True), fx.Count("circuit_limit")]


def test_the_policy_sees_the_relays_accepted_earlier_in_the_change_as_trusted() -> None:
    seen: list[frozenset[str]] = []

    def policy(relay: str, trusted: Set[str]) -> tuple[Admission, str]:
        seen.append(frozenset(trusted))
        return Admission.ACCEPT, "test"

    receive_change(LINE, Circuits((cap(2), cap(3)), ()), view(trusted={url(1)}), policy)
    assert seen == [frozenset({url(1)}), frozenset({url(1), url(2)})]


def test_a_relay_to_ask_about_is_held_and_at_most_eight_proposals_wait() -> None:
    effects = receive_change(
        LINE, Circuits((cap(2), cap(3)), ()), view(proposed={url(9)}, proposals=MAX_RELAYS - 1), ask_all
    )
    assert without_end(effects) == [
        fx.HoldProposal(LINE, cap(2)),
        fx.Count("circuit_held"),
        fx.Count("circuit_refused_policy"),
        fx.DeclineCircuit(LINE, url(3), f"already {MAX_RELAYS} proposals await approval on this line"),
    ]


def test_a_refused_relay_is_declined_to_the_peer() -> None:
    effects = receive_change(LINE, Circuits((cap(2),), ()), view(theirs={url(1)}), refuse_all)
    assert without_end(effects) == [
        fx.Count("circuit_refused_policy"),
        fx.DeclineCircuit(LINE, url(2), "not allowed"),
    ]


def test_a_removal_never_takes_the_last_circuit() -> None:
    effects = receive_change(LINE, Circuits((), (url(1), url(2))), view(theirs={url(1), url(2)}), accept_all)
    assert without_end(effects) == [fx.DropCircuit(LINE, url(1)), fx.Count("circuit_refused")]


def test_a_removal_withdraws_a_held_proposal_or_declines_ours() -> None:
    effects = receive_change(
        LINE,
        Circuits((), (url(5), url(5), url(6), url(7))),
        view(ours={url(1), url(6)}, theirs={url(1)}, proposed={url(5)}),
        accept_all,
    )
    assert without_end(effects) == [
        fx.WithdrawProposal(LINE, url(5)),
        fx.Count("circuit_withdrawn"),
        fx.Count("circuit_refused"),  # (withdrawn already: the second removal finds nothing)
        fx.RetireCircuit(LINE, url(6)),  # the peer declined our proposal of relay 6
        fx.Count("circuit_declined"),
        fx.Count("circuit_refused"),  # a relay that is nobody's circuit
    ]


def test_a_change_held_then_withdrawn_in_one_payload_leaves_nothing_held() -> None:
    effects = receive_change(LINE, Circuits((cap(2),), (url(2),)), view(theirs={url(1)}), ask_all)
    assert without_end(effects) == [
        fx.HoldProposal(LINE, cap(2)),
        fx.Count("circuit_held"),
        fx.WithdrawProposal(LINE, url(2)),
        fx.Count("circuit_withdrawn"),
    ]


def test_the_operators_own_removal_and_approval_are_bounded() -> None:
    with pytest.raises(InvalidArgument, match="no circuit through"):
        check_removal("alpha", url(3), matches=0, circuits=2)
    with pytest.raises(InvalidArgument, match="give the full URL"):
        check_removal("alpha", "relay", matches=2, circuits=2)
    with pytest.raises(InvalidArgument, match="keeps at least one circuit"):
        check_removal("alpha", url(1), matches=1, circuits=1)
    check_removal("alpha", url(1), matches=1, circuits=2)
    full = {url(n) for n in range(MAX_RELAYS)}
    with pytest.raises(InvalidArgument, match="already has 8 circuits"):
        check_approval("alpha", url(20), full)
    check_approval("alpha", url(0), full)  # already a circuit: approving it adds nothing
