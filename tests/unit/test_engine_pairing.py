"""The engine's pairing decisions (proto/engine/pairing.py), without a relay or a disk."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backchannel.errors import (
    InvalidArgument,
    InvalidInvitation,
    InvitationAlreadyAccepted,
    InvitationAlreadyUsed,
    MisaddressedFrame,
)
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import pairing
from backchannel.proto.engine.core import Lifecycle
from backchannel.proto.invitation import Invitation, MailboxCapability
from backchannel.proto.payloads import Welcome

from support.engine_sim import pair

OURS, THEIRS = b"o" * 32, b"t" * 32


def invitation(expires_at: int = 10_000, identity_key: bytes = THEIRS) -> Invitation:
    return Invitation(
        line_id=b"L" * 16,
        name="alpha",
        identity_key=identity_key,
        signing_key=b"s" * 32,
        one_time_key=b"k" * 32,
        pairing_key=b"p" * 32,
        kem_key=b"",
        mailboxes=(MailboxCapability("ws://relay.example:1", b"i" * 16, b"x" * 32),),
        created_at=0,
        expires_at=expires_at,
        on_record=False,
    )


def check(inv: Invitation, made_here: bool = False, have_line: bool = False, now: float = 5.0) -> None:
    pairing.check_acceptance(inv, made_here=made_here, have_line=have_line, now=now, own_identity_key=OURS)


def test_an_invitation_is_accepted_once_by_another_station_before_it_expires() -> None:
    check(invitation())
    with pytest.raises(InvalidArgument, match="made by this station"):
        check(invitation(), made_here=True)
    with pytest.raises(InvitationAlreadyAccepted):
        check(invitation(), have_line=True)
    with pytest.raises(InvalidInvitation, match="expired"):
        check(invitation(expires_at=4_999))
    with pytest.raises(InvalidArgument, match="made by this station"):
        check(invitation(identity_key=OURS))  # (an invitation of ours whose row was lost)


def test_a_hello_opens_only_an_invitation_of_ours_and_only_once() -> None:
    pairing.admit_hello(found=True, used=False)
    with pytest.raises(MisaddressedFrame):
        pairing.admit_hello(found=False, used=False)
    with pytest.raises(InvitationAlreadyUsed):
        pairing.admit_hello(found=True, used=True)
    with pytest.raises(InvalidInvitation, match="expired"):
        pairing.check_unexpired(invitation(expires_at=4_999), now=5.0)


def test_an_opened_hello_establishes_the_line_spends_the_invitation_and_owes_the_welcome() -> None:
    inviter, _, _ = pair(b"seed")
    state = inviter.core.state
    invited = "ws://relay.invalid:1"
    offered = (
        MailboxCapability(invited, b"a" * 16, b"a" * 32),
        MailboxCapability("ws://elsewhere.example:1", b"b" * 16, b"b" * 32),
    )
    core, effects = pairing.hello_opened(state, offered, {invited})
    assert core.lifecycle is Lifecycle.ESTABLISHED
    line = state.line_id
    assert effects == [
        fx.SpendInvitation(line),
        fx.Count("circuit_refused_policy", 1),  # a hello may not make us connect anywhere else
        fx.AcceptCircuit(line, offered[0], answer=False),
        fx.SendPayload(line, Welcome(), "welcome"),
    ]


def test_the_accepter_speaks_only_once_welcomed_then_sends_what_it_queued() -> None:
    inviter, accepter, _ = pair(b"seed")
    assert accepter.core.lifecycle is Lifecycle.PAIRING
    assert accepter.core.may_send(1) and not accepter.core.may_send(2)
    queued = replace(accepter.core, state=replace(accepter.core.state, next_seq=4))  # 2 and 3 wait
    core, effects = pairing.welcomed(queued)
    assert core.established and core.may_send(3)
    line = core.line_id
    assert effects == [fx.SaveLine(line, established=True), fx.QueueFrames(line, (2, 3))]
    assert pairing.welcomed(core) == (core, [])  # a second welcome changes nothing
    assert pairing.welcomed(inviter.core) == (inviter.core, [])  # nor a welcome to the inviter
