"""Pairing as the engine decides it: who may accept an invitation, the single use of one, which
circuits a hello may bring, and the welcome that lets the accepter's line speak.

Theory of operation
-------------------
The handshake's cryptography is :mod:`backchannel.proto.line` (accept, open the hello); the
mailboxes on relays are the shell's I/O. What is left is protocol decision, and it lives here
as pure functions of what the shell read:

- an invitation may be accepted only by another station, once, before it expires
  (:func:`check_acceptance`);
- a hello may open one of *our* invitations only once (:func:`admit_hello`), and only before
  it expires (:func:`check_unexpired`); a second party that tries is told it was used;
- an opened hello establishes the inviter's line at once (the lifecycle's ``HELLO_OPENED``),
  keeps only the accepter's mailboxes on the relays of our invitation (a hello may not make
  this station connect anywhere else), spends the invitation, and answers with the welcome
  (:func:`hello_opened`);
- the accepter's line sends only its hello until that welcome arrives, then everything it
  queued meanwhile (:func:`welcomed`; :meth:`LineCore.may_send` is the gate);
- a pairing that cannot complete says so: the accepter's line still waiting for the welcome
  ``timeout`` seconds after it accepted is *failed*, with an alarm (:func:`timed_out`; a
  welcome arriving later still establishes it), and a second hello for an invitation already
  used alarms the inviter's operator (:func:`reused`), instead of being only counted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from backchannel.clock import ms
from backchannel.errors import (
    InvalidArgument,
    InvalidInvitation,
    InvitationAlreadyAccepted,
    InvitationAlreadyUsed,
    MisaddressedFrame,
)
from backchannel.proto import line as proto_line
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine.core import Event, Lifecycle, LineCore, transition
from backchannel.proto.invitation import Invitation, MailboxCapability
from backchannel.proto.line import LineState
from backchannel.proto.payloads import Welcome

__all__ = [
    "admit_hello",
    "check_acceptance",
    "check_unexpired",
    "hello_circuits",
    "hello_opened",
    "reused",
    "timed_out",
    "welcomed",
]

_OURS = "this invitation was made by this station; give it to the other one"


def check_acceptance(
    invitation: Invitation, *, made_here: bool, have_line: bool, now: float, own_identity_key: bytes
) -> None:
    """Whether this station may accept ``invitation`` now; raises the operator's error if not.

    ``made_here``: the invitation is one of ours (we keep it); ``have_line``: a line with its
    id exists already (accepted before, or concurrently while the relays were asked).
    """
    if made_here:
        raise InvalidArgument(_OURS)
    if have_line:
        raise InvitationAlreadyAccepted()
    if invitation.expires_at < ms(now):
        raise InvalidInvitation("the invitation has expired; ask the other station for a new one")
    if invitation.identity_key == own_identity_key:
        raise InvalidArgument(_OURS)


def admit_hello(found: bool, used: bool) -> None:
    """A hello for a line we do not have may open only an invitation of ours, and only once."""
    if not found:
        raise MisaddressedFrame("a frame arrived for a line this station does not have")
    if used:
        raise InvitationAlreadyUsed()


def check_unexpired(invitation: Invitation, now: float) -> None:
    if invitation.expires_at < ms(now):
        raise InvalidInvitation("a hello arrived for an invitation that has expired")


def hello_circuits(
    offered: Sequence[MailboxCapability], invited: Collection[str]
) -> tuple[tuple[MailboxCapability, ...], int]:
    """The accepter's mailboxes we take (those on the relays of our invitation), and how many
    we refuse: a hello may not make this station connect anywhere else."""
    kept = tuple(cap for cap in offered if cap.url in invited)
    return kept, len(offered) - len(kept)


def hello_opened(
    state: LineState, offered: Sequence[MailboxCapability], invited: Collection[str]
) -> tuple[LineCore, list[fx.Effect]]:
    """The inviter opened a genuine hello: the line is established, the invitation spent, the
    accepted circuits kept, and the welcome is owed (sealed by the shell in the same
    transaction, queued after it)."""
    lifecycle = transition(None, Event.HELLO_OPENED)
    assert lifecycle is not None
    line_id = state.line_id
    kept, refused = hello_circuits(offered, invited)
    effects: list[fx.Effect] = [fx.SpendInvitation(line_id)]
    if refused:
        effects.append(fx.Count("circuit_refused_policy", refused))
    effects += [fx.AcceptCircuit(line_id, cap, answer=False) for cap in kept]
    effects.append(fx.SendPayload(line_id, Welcome(), "welcome"))
    return LineCore(state, lifecycle), effects


def welcomed(core: LineCore) -> tuple[LineCore, list[fx.Effect]]:
    """The inviter's welcome reached the accepter: the line is established, and what it queued
    meanwhile (everything after the hello) may leave. A welcome anywhere else changes nothing."""
    state = core.state
    if state.role != proto_line.ACCEPTER or core.established:
        return core, []
    lifecycle = transition(core.lifecycle, Event.WELCOMED)
    assert lifecycle is Lifecycle.ESTABLISHED
    effects: list[fx.Effect] = [
        fx.SaveLine(core.line_id, established=True),
        fx.QueueFrames(core.line_id, tuple(range(2, state.next_seq))),
    ]
    return replace(core, lifecycle=lifecycle), effects


def timed_out(
    core: LineCore, accepted_at: float, now: float, timeout: float
) -> tuple[LineCore, list[fx.Effect]]:
    """The accepter's line still *pairing* ``timeout`` seconds after it accepted becomes *failed*.

    Nothing on the wire says why the welcome did not come (the inviter had already opened
    another station's hello for this invitation, or it is not running), so the effect carries
    only the fact; the shell stores the state and raises ``pairing_failed`` naming both causes.
    """
    if core.lifecycle is not Lifecycle.PAIRING or now - accepted_at < timeout:
        return core, []
    lifecycle = transition(core.lifecycle, Event.TIMED_OUT)
    assert lifecycle is Lifecycle.FAILED
    return replace(core, lifecycle=lifecycle), [fx.PairingFailed(core.line_id, timeout)]


def reused(line_id: bytes, circuit: str | None) -> list[fx.Effect]:
    """A hello for our invitation already used (refused as :class:`InvitationAlreadyUsed`, and
    counted): the inviter's operator must hear that someone else holds the invitation text."""
    return [fx.InvitationReused(line_id, circuit)]
