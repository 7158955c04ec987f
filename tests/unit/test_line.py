"""A line's protocol state, driven directly: pairing, sealing, authenticating, decrypting."""

from __future__ import annotations

from typing import Any

import pytest

from backchannel.clock import FakeRng
from backchannel.errors import BadSignature, DecryptError, MisaddressedFrame, ProtocolError
from backchannel.proto import envelope
from backchannel.proto import line as proto_line
from backchannel.proto.envelope import Header, Kind
from backchannel.proto.invitation import MailboxCapability, SignedInvitation
from backchannel.proto.keyschedule import derive_line_keys
from backchannel.proto.ordering import Verdict, classify
from backchannel.proto.payloads import (
    Acknowledged,
    Delivered,
    Hello,
    Message,
    Payload,
    Precedence,
    Welcome,
    hello_binding,
)
from backchannel.proto.primitives import mlkem_encapsulate, x25519, x25519_public
from backchannel.proto.record import Seen, decode_entry, encode_entry
from backchannel.proto.session import Identity
from backchannel.proto.transcript import genesis

RELAY = "ws://relay.invalid:1"
CAPS = (MailboxCapability(RELAY, b"s" * 16, b"k" * 32),)


def msg(text: str, at: int = 1) -> Message:
    return Message(Precedence.ROUTINE, text, at)


def forge_hello(
    accepter: Identity,
    signed: SignedInvitation,
    rng: FakeRng,
    *,
    binding: bytes | None = None,
    claimed_signing_key: bytes | None = None,
    payload: Payload | None = None,
    inner: bytes | None = None,
) -> bytes:
    """Build a hello the way ``line.accept`` does, with any part replaced."""
    inv = signed.invitation
    ephemeral = rng.bytes(32)
    kem_secret, kem_ciphertext = mlkem_encapsulate(inv.kem_key)
    keys = derive_line_keys(x25519(ephemeral, inv.pairing_key), kem_secret, signed.digest, inv.line_id)
    session = accepter.outbound_session(inv.identity_key, inv.one_time_key)
    if binding is None:
        binding = accepter.sign(hello_binding(inv.line_id, accepter.identity_key, signed.digest))
    start = Seen(0, genesis(inv.line_id, 0))
    raw = encode_entry(payload or Hello("bravo", CAPS, binding), start, inv.line_id, 1, 1, None)
    if inner is None:
        inner = accepter.identity_key + (claimed_signing_key or accepter.signing_key) + session.encrypt(raw)
    header = Header(Kind.HELLO, inv.line_id, 1, 1, rng.bytes(12), x25519_public(ephemeral), kem_ciphertext)
    return envelope.seal(header, keys.to_inviter, inner)


def fresh_invitation(support: Any, seed: bytes) -> tuple[Identity, Any, Any, FakeRng]:
    rng = FakeRng(seed)
    inviter = Identity.generate()
    signed, pending = support.make_invitation(inviter, rng)
    return inviter, signed, pending, rng


# ---- pairing -----------------------------------------------------------------------------


def test_pairing_gives_both_sides_the_same_line_and_keys(paired: Any) -> None:
    inviter, accepter = paired.inviter.state, paired.accepter.state
    assert inviter.line_id == accepter.line_id == paired.signed.invitation.line_id
    assert inviter.keys == accepter.keys
    assert inviter.keys.to_accepter != inviter.keys.to_inviter
    assert (inviter.role, accepter.role) == (proto_line.INVITER, proto_line.ACCEPTER)
    assert (inviter.out_direction, accepter.out_direction) == (0, 1)
    assert (inviter.next_seq, accepter.next_seq) == (1, 2)
    assert (inviter.delivered_upto, accepter.delivered_upto) == (1, 0)
    assert inviter.transcript == accepter.transcript
    assert inviter.transcript.counts == (0, 1)


def test_open_hello_reports_the_accepters_name_mailboxes_and_keys(support: Any) -> None:
    inviter, signed, pending, rng = fresh_invitation(support, b"hello-report")
    accepter = Identity.generate()
    accepted = proto_line.accept(accepter, signed, "bravo", CAPS, rng)
    opened = proto_line.open_hello(inviter, pending, envelope.parse(accepted.hello.frame))
    assert opened.hello.name == "bravo"
    assert opened.hello.mailboxes == CAPS
    assert opened.peer_identity_key == accepter.identity_key
    assert opened.peer_signing_key == accepter.signing_key
    assert accepted.hello.seq == 1
    assert decode_entry(accepted.hello.payload, opened.state.line_id, 1, 1, None).payload == opened.hello
    assert opened.raw == accepted.hello.payload


def test_messages_flow_both_ways(paired: Any, support: Any) -> None:
    rng = paired.rng
    welcome = support.transfer(paired.inviter, paired.accepter, Welcome(), rng)
    assert welcome.payload == Welcome() and welcome.seq == 1
    there = support.transfer(paired.inviter, paired.accepter, msg("from the inviter"), rng)
    back = support.transfer(paired.accepter, paired.inviter, msg("from the accepter"), rng)
    assert there.payload == msg("from the inviter") and there.seq == 2
    assert back.payload == msg("from the accepter") and back.seq == 2
    assert paired.inviter.state.next_seq == 3
    assert paired.accepter.state.delivered_upto == 2
    assert paired.inviter.state.delivered_upto == 2


def test_every_payload_type_survives_the_line(paired: Any, support: Any) -> None:
    rng = paired.rng
    payloads: list[Payload] = [
        Welcome(),
        Message(Precedence.FLASH, "ünïcødé ✓", 5),
        Delivered(3, 6),
        Acknowledged(2, "duty officer", 7),
    ]
    for payload in payloads:
        assert support.transfer(paired.inviter, paired.accepter, payload, rng).payload == payload


def test_transcript_heads_match_after_interleaved_traffic(paired: Any, support: Any) -> None:
    rng = paired.rng
    support.transfer(paired.inviter, paired.accepter, Welcome(), rng)
    pattern = "IAAIIIAIAAAI"
    for i, who in enumerate(pattern):
        sender, receiver = (
            (paired.inviter, paired.accepter) if who == "I" else (paired.accepter, paired.inviter)
        )
        support.transfer(sender, receiver, msg(f"m{i}"), rng)
    a, b = paired.inviter.state.transcript, paired.accepter.state.transcript
    assert a.counts == b.counts == (1 + pattern.count("I"), 1 + pattern.count("A"))
    assert a.head() == b.head()


def test_transcript_heads_differ_while_a_frame_is_in_flight(paired: Any, support: Any) -> None:
    rng = paired.rng
    support.transfer(paired.inviter, paired.accepter, Welcome(), rng)
    paired.inviter.state, in_flight = proto_line.seal_payload(
        paired.inviter.state, paired.inviter.session, msg("pending"), rng
    )
    assert paired.inviter.state.transcript.head() != paired.accepter.state.transcript.head()
    inner = proto_line.authenticate(paired.accepter.state, envelope.parse(in_flight.frame))
    paired.accepter.state, _ = proto_line.decrypt_next(
        paired.accepter.state, paired.accepter.session, in_flight.seq, inner
    )
    assert paired.inviter.state.transcript.head() == paired.accepter.state.transcript.head()


def test_the_transcript_records_the_exact_canonical_payload(paired: Any) -> None:
    state, sealed = proto_line.seal_payload(
        paired.inviter.state, paired.inviter.session, msg("x"), paired.rng
    )
    entry = decode_entry(sealed.payload, state.line_id, 0, 1, None)
    assert entry.payload == msg("x")
    assert entry.seen == Seen(1, paired.inviter.state.transcript.heads[1])  # it commits to the hello
    expected = paired.inviter.state.transcript.append(0, 1, sealed.payload)
    assert state.transcript == expected


def test_sealing_never_reuses_a_sequence_number(paired: Any) -> None:
    state, session = paired.inviter.state, paired.inviter.session
    seqs = []
    for i in range(5):
        state, sealed = proto_line.seal_payload(state, session, msg(str(i)), paired.rng)
        seqs.append(sealed.seq)
        assert envelope.parse(sealed.frame).header.seq == sealed.seq
    assert seqs == [1, 2, 3, 4, 5]


# ---- what authenticate refuses ---------------------------------------------------------


def test_a_frame_from_another_line_is_misaddressed(paired: Any, support: Any) -> None:
    other = support.pair_lines(b"another line")
    _, foreign = proto_line.seal_payload(other.inviter.state, other.inviter.session, msg("x"), other.rng)
    with pytest.raises(MisaddressedFrame):
        proto_line.authenticate(paired.accepter.state, envelope.parse(foreign.frame))


def test_a_frame_of_our_own_direction_is_misaddressed(paired: Any) -> None:
    _, own = proto_line.seal_payload(paired.inviter.state, paired.inviter.session, msg("x"), paired.rng)
    with pytest.raises(MisaddressedFrame):
        proto_line.authenticate(paired.inviter.state, envelope.parse(own.frame))


def test_a_replayed_frame_authenticates_but_is_classified_duplicate(paired: Any) -> None:
    paired.inviter.state, sealed = proto_line.seal_payload(
        paired.inviter.state, paired.inviter.session, Welcome(), paired.rng
    )
    first = proto_line.authenticate(paired.accepter.state, envelope.parse(sealed.frame))
    paired.accepter.state, _ = proto_line.decrypt_next(
        paired.accepter.state, paired.accepter.session, sealed.seq, first
    )
    replay = proto_line.authenticate(paired.accepter.state, envelope.parse(sealed.frame))
    assert replay == first
    assert classify(sealed.seq, paired.accepter.state.delivered_upto, set()) is Verdict.DUPLICATE


def test_a_replayed_hello_on_the_inviter_is_a_duplicate(paired: Any) -> None:
    sealed = envelope.parse(paired.hello.frame)
    proto_line.authenticate(paired.inviter.state, sealed)  # genuine: no exception
    assert classify(1, paired.inviter.state.delivered_upto, set()) is Verdict.DUPLICATE


def test_a_forged_sequence_number_is_caught_before_olm_and_burns_nothing(paired: Any) -> None:
    paired.inviter.state, sealed = proto_line.seal_payload(
        paired.inviter.state, paired.inviter.session, Welcome(), paired.rng
    )
    forged = bytearray(sealed.frame)
    forged[21 + 7] ^= 0x02  # sequence 1 becomes 3
    with pytest.raises(DecryptError):
        proto_line.authenticate(paired.accepter.state, envelope.parse(bytes(forged)))
    inner = proto_line.authenticate(paired.accepter.state, envelope.parse(sealed.frame))
    _, opened = proto_line.decrypt_next(paired.accepter.state, paired.accepter.session, 1, inner)
    assert opened.payload == Welcome()


def test_early_frames_can_be_authenticated_and_decrypted_once_the_gap_fills(paired: Any) -> None:
    frames = []
    for payload in (Welcome(), msg("two"), msg("three")):
        paired.inviter.state, sealed = proto_line.seal_payload(
            paired.inviter.state, paired.inviter.session, payload, paired.rng
        )
        frames.append(sealed)
    early = proto_line.authenticate(paired.accepter.state, envelope.parse(frames[2].frame))
    held: dict[int, bytes] = {}
    assert classify(3, paired.accepter.state.delivered_upto, held) is Verdict.HOLD
    held[3] = early
    assert classify(3, paired.accepter.state.delivered_upto, held) is Verdict.DUPLICATE
    texts = []
    for sealed in frames[:2]:
        inner = proto_line.authenticate(paired.accepter.state, envelope.parse(sealed.frame))
        assert classify(sealed.seq, paired.accepter.state.delivered_upto, held) is Verdict.DELIVER
        paired.accepter.state, opened = proto_line.decrypt_next(
            paired.accepter.state, paired.accepter.session, sealed.seq, inner
        )
        texts.append(opened.payload)
    paired.accepter.state, opened = proto_line.decrypt_next(
        paired.accepter.state, paired.accepter.session, 3, held.pop(3)
    )
    assert [*texts, opened.payload] == [Welcome(), msg("two"), msg("three")]


def test_decrypt_next_refuses_to_feed_olm_out_of_order(paired: Any) -> None:
    with pytest.raises(ValueError, match="out of order"):
        proto_line.decrypt_next(paired.accepter.state, paired.accepter.session, 2, b"\x01xx")


def test_a_hello_kind_frame_after_the_first_is_a_protocol_error(paired: Any) -> None:
    state = paired.inviter.state
    header = Header(Kind.HELLO, state.line_id, 1, 2, b"n" * 12, b"k" * 32, b"c" * 1088)
    frame = envelope.seal(header, state.keys.to_inviter, b"x" * 80)
    with pytest.raises(ProtocolError, match="hello"):
        proto_line.authenticate(state, envelope.parse(frame))


def test_a_frame_sealed_under_the_wrong_direction_key_is_a_decrypt_error(paired: Any) -> None:
    state = paired.inviter.state
    header = Header(Kind.DATA, state.line_id, 1, 2, b"n" * 12)
    frame = envelope.seal(header, state.keys.to_accepter, b"olm")  # direction 1 uses to_inviter
    with pytest.raises(DecryptError):
        proto_line.authenticate(state, envelope.parse(frame))


def test_garbage_inside_a_genuine_envelope_is_refused_by_olm_and_spends_its_place(paired: Any) -> None:
    state = paired.accepter.state
    header = Header(Kind.DATA, state.line_id, 0, 1, b"n" * 12)
    frame = envelope.seal(header, state.keys.to_accepter, b"\x01" + b"garbage" * 10)
    inner = proto_line.authenticate(state, envelope.parse(frame))
    after, opened = proto_line.decrypt_next(state, paired.accepter.session, 1, inner)
    assert opened.payload is None
    assert isinstance(opened.error, (DecryptError, ProtocolError))
    assert after.delivered_upto == 1  # the line does not stall on it
    assert after.transcript.head() != state.transcript.head()


# ---- what open_hello refuses ------------------------------------------------------------


def test_a_hello_for_another_invitation_is_misaddressed(support: Any) -> None:
    inviter, _signed, pending, rng = fresh_invitation(support, b"first")
    other_signed, _ = support.make_invitation(inviter, rng)
    accepted = proto_line.accept(Identity.generate(), other_signed, "bravo", CAPS, rng)
    with pytest.raises(MisaddressedFrame):
        proto_line.open_hello(inviter, pending, envelope.parse(accepted.hello.frame))


def test_a_hello_built_on_another_invitations_keys_fails_to_open(support: Any) -> None:
    inviter, signed, pending, rng = fresh_invitation(support, b"keys")
    # Same line id, but the pairing keys and digest of a different invitation.
    lookalike, _ = support.make_invitation(inviter, rng, line_id=signed.invitation.line_id)
    accepted = proto_line.accept(Identity.generate(), lookalike, "bravo", CAPS, rng)
    with pytest.raises(DecryptError):
        proto_line.open_hello(inviter, pending, envelope.parse(accepted.hello.frame))


def test_open_hello_refuses_a_data_frame(paired: Any, support: Any) -> None:
    inviter, signed, pending, _rng = fresh_invitation(support, b"data")
    header = Header(Kind.DATA, signed.invitation.line_id, 1, 1, b"n" * 12)
    frame = envelope.seal(header, b"k" * 32, b"x")
    with pytest.raises(MisaddressedFrame):
        proto_line.open_hello(inviter, pending, envelope.parse(frame))


def test_an_untampered_forged_hello_helper_opens(support: Any) -> None:
    """Guards the tests below: the hand-built hello is valid when nothing is replaced."""
    inviter, signed, pending, rng = fresh_invitation(support, b"control")
    frame = forge_hello(Identity.generate(), signed, rng)
    assert proto_line.open_hello(inviter, pending, envelope.parse(frame)).hello.name == "bravo"


def test_a_hello_with_a_tampered_binding_signature_is_bad_signature(support: Any) -> None:
    inviter, signed, pending, rng = fresh_invitation(support, b"tampered")
    accepter = Identity.generate()
    good = accepter.sign(hello_binding(signed.invitation.line_id, accepter.identity_key, signed.digest))
    tampered = bytes([good[0] ^ 0x01]) + good[1:]
    frame = forge_hello(accepter, signed, rng, binding=tampered)
    with pytest.raises(BadSignature, match="forged"):
        proto_line.open_hello(inviter, pending, envelope.parse(frame))


def test_a_hello_binding_over_another_invitation_is_bad_signature(support: Any) -> None:
    inviter, signed, pending, rng = fresh_invitation(support, b"other-digest")
    accepter = Identity.generate()
    binding = accepter.sign(hello_binding(signed.invitation.line_id, accepter.identity_key, b"\x00" * 32))
    frame = forge_hello(accepter, signed, rng, binding=binding)
    with pytest.raises(BadSignature):
        proto_line.open_hello(inviter, pending, envelope.parse(frame))


def test_a_hello_claiming_someone_elses_signing_key_is_bad_signature(support: Any) -> None:
    inviter, signed, pending, rng = fresh_invitation(support, b"claimed")
    accepter, victim = Identity.generate(), Identity.generate()
    frame = forge_hello(accepter, signed, rng, claimed_signing_key=victim.signing_key)
    with pytest.raises(BadSignature):
        proto_line.open_hello(inviter, pending, envelope.parse(frame))


def test_a_first_frame_that_is_not_a_hello_payload_is_a_protocol_error(support: Any) -> None:
    inviter, signed, pending, rng = fresh_invitation(support, b"welcome-first")
    frame = forge_hello(Identity.generate(), signed, rng, payload=Welcome())
    with pytest.raises(ProtocolError, match="hello"):
        proto_line.open_hello(inviter, pending, envelope.parse(frame))


def test_a_truncated_hello_inner_is_a_protocol_error(support: Any) -> None:
    inviter, signed, pending, rng = fresh_invitation(support, b"short")
    frame = forge_hello(Identity.generate(), signed, rng, inner=b"\x00" * 65)
    with pytest.raises(ProtocolError, match="truncated"):
        proto_line.open_hello(inviter, pending, envelope.parse(frame))


def test_a_hello_whose_olm_part_is_not_a_pre_key_message_is_a_protocol_error(support: Any) -> None:
    inviter, signed, pending, rng = fresh_invitation(support, b"not-prekey")
    accepter = Identity.generate()
    inner = accepter.identity_key + accepter.signing_key + b"\x01" + b"\x00" * 40
    frame = forge_hello(accepter, signed, rng, inner=inner)
    with pytest.raises(ProtocolError):
        proto_line.open_hello(inviter, pending, envelope.parse(frame))
