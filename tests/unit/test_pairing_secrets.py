"""What each secret of a pairing is needed for (THREAT_MODEL §4, §5, §6), on the pure core.

The line keys are HKDF over the X25519 secret *and* the ML-KEM-768 shared secret, salted with
the invitation digest (PROTOCOL §6.3). These tests take the adversaries' positions: a quantum
adversary who recovers the X25519 secret from recorded traffic, a thief who holds the
invitation and accepts it too, a thief of a station's disk after the operators paired anew,
and a peer with a line of its own to the station.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from backchannel.clock import FakeRng
from backchannel.errors import DecryptError, MisaddressedFrame
from backchannel.proto import envelope
from backchannel.proto import line as proto_line
from backchannel.proto.invitation import MailboxCapability
from backchannel.proto.keyschedule import derive_line_keys
from backchannel.proto.line import LineState
from backchannel.proto.payloads import Message, Precedence
from backchannel.proto.primitives import mlkem_decapsulate, x25519
from backchannel.proto.session import Identity

RELAY = "ws://relay.invalid:1"


def msg(text: str) -> Message:
    return Message(Precedence.ROUTINE, text, 1)


def sealed_message(side: Any, rng: FakeRng, text: str = "secret") -> envelope.Sealed:
    side.state, sealed = proto_line.seal_payload(side.state, side.session, msg(text), rng)
    return envelope.parse(sealed.frame)


def test_with_the_x25519_secret_alone_the_line_keys_differ(support: Any) -> None:
    """§6: a quantum computer breaks X25519 from the recorded hello; ML-KEM-768 it cannot."""
    paired = support.pair_lines(b"quantum")
    hello = envelope.parse(paired.hello.frame).header
    inv, digest = paired.signed.invitation, paired.signed.digest
    x_secret = x25519(paired.pending.pairing_secret, hello.hello_key)  # what the adversary gets
    kem_secret = mlkem_decapsulate(paired.pending.kem_seed, hello.hello_kem)  # what it does not
    real = paired.inviter.state.keys
    assert derive_line_keys(x_secret, kem_secret, digest, inv.line_id) == real  # the guard
    rng = FakeRng(b"guesses")
    guesses = [bytes(32), hello.hello_kem[:32], rng.bytes(32)]  # nothing, a public value, anything
    recorded = sealed_message(paired.accepter, paired.rng)
    for guess in guesses:
        keys = derive_line_keys(x_secret, guess, digest, inv.line_id)
        assert keys.to_accepter != real.to_accepter and keys.to_inviter != real.to_inviter
        with pytest.raises(DecryptError):
            proto_line.authenticate(replace(paired.inviter.state, keys=keys), recorded)
    # Nor does the ML-KEM secret alone (a break of ML-KEM-768 only) give the keys.
    assert derive_line_keys(bytes(32), kem_secret, digest, inv.line_id) != real
    # Nor both secrets without the exact invitation they were bound to.
    assert derive_line_keys(x_secret, kem_secret, bytes(32), inv.line_id) != real


def test_a_thief_who_accepts_the_same_invitation_cannot_read_the_intended_line(support: Any) -> None:
    """§5: the invitation holds no secret of the line the intended accepter opens."""
    paired = support.pair_lines(b"invitation thief")
    rng = FakeRng(b"thief")
    caps = (MailboxCapability(RELAY, rng.bytes(16), rng.bytes(32)),)
    thief = proto_line.accept(Identity.generate(), paired.signed, "thief", caps, rng)
    assert thief.state.line_id == paired.accepter.state.line_id  # the same line id, in clear
    assert thief.state.keys != paired.accepter.state.keys
    for side in (paired.inviter, paired.accepter):  # both directions of the intended line
        with pytest.raises((DecryptError, MisaddressedFrame)):
            proto_line.authenticate(_as_peer_of(thief.state, side.state), sealed_message(side, paired.rng))
    # And a frame the thief forges under its keys does not authenticate on the intended line.
    _, forged = proto_line.seal_payload(thief.state, thief.session, msg("forged"), rng)
    with pytest.raises(DecryptError):
        proto_line.authenticate(paired.inviter.state, envelope.parse(forged.frame))


def _as_peer_of(thief: LineState, victim: LineState) -> LineState:
    """The thief's keys in the role that receives what ``victim`` sends."""
    return replace(victim, role=1 - victim.role, keys=thief.keys)


def test_pairing_again_gives_a_new_line_that_the_old_keys_do_not_open(support: Any) -> None:
    """§4: a thief holding the old line's keys gains nothing from them on the re-paired line."""
    rng = FakeRng(b"re-pair")
    alpha, bravo = Identity.generate(), Identity.generate()
    lines = []
    for _ in range(2):
        signed, pending = support.make_invitation(alpha, rng)
        caps = (MailboxCapability(RELAY, rng.bytes(16), rng.bytes(32)),)
        accepted = proto_line.accept(bravo, signed, "bravo", caps, rng)
        opened = proto_line.open_hello(alpha, pending, envelope.parse(accepted.hello.frame))
        lines.append((opened, accepted, signed))
    (old, _, old_inv), (new, new_accepted, new_inv) = lines
    assert old.state.line_id != new.state.line_id
    assert {old.state.keys.to_accepter, old.state.keys.to_inviter}.isdisjoint(
        {new.state.keys.to_accepter, new.state.keys.to_inviter}
    )
    assert {c.send_id for c in old_inv.invitation.mailboxes}.isdisjoint(
        {c.send_id for c in new_inv.invitation.mailboxes}
    )
    _, frame = proto_line.seal_payload(new_accepted.state, new_accepted.session, msg("after"), rng)
    with pytest.raises(DecryptError):  # even with the new line's id, the old keys fail
        proto_line.authenticate(replace(new.state, keys=old.state.keys), envelope.parse(frame.frame))


def test_a_peer_cannot_read_or_inject_into_the_stations_other_line(support: Any) -> None:
    """§3: each line has its own keys; a frame moved to another line's id fails to authenticate."""
    mine = support.pair_lines(b"line with the hostile peer")
    other = support.pair_lines(b"line with someone else")
    assert mine.inviter.state.keys != other.inviter.state.keys
    # The hostile peer re-addresses a frame it sealed to the station's other line.
    mine.accepter.state, sealed = proto_line.seal_payload(
        mine.accepter.state, mine.accepter.session, msg("inject"), mine.rng
    )
    moved = bytearray(sealed.frame)
    start = sealed.frame.index(mine.accepter.state.line_id)
    moved[start : start + 16] = other.inviter.state.line_id
    with pytest.raises(DecryptError):
        proto_line.authenticate(other.inviter.state, envelope.parse(bytes(moved)))
    # And a frame of the other line does not open under the hostile peer's keys.
    recorded = sealed_message(other.inviter, other.rng)
    with pytest.raises((DecryptError, MisaddressedFrame)):
        proto_line.authenticate(replace(other.accepter.state, keys=mine.accepter.state.keys), recorded)
