"""The engine's decisions for a pairing that cannot complete (proto/engine/pairing.py):
the accepter's line fails after the timeout, and only then; a late welcome still opens it; a
second use of an invitation is an alarm effect for the inviter."""

from __future__ import annotations

from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import pairing
from backchannel.proto.engine.core import Lifecycle

from support.engine_sim import pair


def test_the_accepters_line_fails_after_the_timeout_and_a_late_welcome_still_opens_it() -> None:
    inviter, accepter, _ = pair(b"timeout")
    core = accepter.core
    assert core.lifecycle is Lifecycle.PAIRING
    same, none = pairing.timed_out(core, accepted_at=100.0, now=159.9, timeout=60.0)
    assert same is core and none == []
    failed, effects = pairing.timed_out(core, accepted_at=100.0, now=160.0, timeout=60.0)
    assert failed.lifecycle is Lifecycle.FAILED
    assert effects == [fx.PairingFailed(core.line_id, 60.0)]
    assert pairing.timed_out(failed, 100.0, 10_000.0, 60.0) == (failed, [])  # once
    assert pairing.timed_out(inviter.core, 0.0, 10_000.0, 60.0) == (inviter.core, [])  # established

    opened, welcome = pairing.welcomed(failed)
    assert opened.lifecycle is Lifecycle.ESTABLISHED
    assert fx.SaveLine(core.line_id, established=True) in welcome


def test_a_second_use_of_an_invitation_is_an_alarm_effect() -> None:
    assert pairing.reused(b"L" * 16, "ws://relay.example:1") == [
        fx.InvitationReused(b"L" * 16, "ws://relay.example:1")
    ]
