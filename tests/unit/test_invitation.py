"""The pairing invitation: signed binary form, text form, and everything it must refuse."""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any

import pytest

from backchannel.clock import FakeRng
from backchannel.errors import InvalidInvitation
from backchannel.proto.encoding import b64u_encode, cbor_encode
from backchannel.proto.invitation import (
    INVITATION_CONTEXT,
    MAGIC,
    MAX_RELAYS,
    TEXT_PREFIX,
    VERSION,
    Invitation,
    MailboxCapability,
    SignedInvitation,
    encode_invitation,
    parse_invitation,
    parse_invitation_text,
)
from backchannel.proto.primitives import mldsa_public
from backchannel.proto.session import Identity


@pytest.fixture(scope="module")
def identity() -> Identity:
    return Identity.generate()


RELAY = "ws://relay.invalid:1"


@pytest.fixture
def signed(identity: Identity, support: Any) -> SignedInvitation:
    invitation: SignedInvitation = support.make_invitation(identity, FakeRng(b"invitation"))[0]
    return invitation


def assemble(body: bytes, signature: bytes, version: int = VERSION) -> bytes:
    return MAGIC + bytes([version]) + struct.pack(">H", len(body)) + body + signature


def resign(identity: Identity, body: bytes) -> bytes:
    """A blob whose body is ``body`` with a *valid* signature by ``identity``."""
    return assemble(body, identity.sign(INVITATION_CONTEXT + body))


def body_map(invitation: Invitation) -> dict[str, Any]:
    return {
        "v": VERSION,
        "line": invitation.line_id,
        "name": invitation.name,
        "ik": invitation.identity_key,
        "ed": invitation.signing_key,
        "otk": invitation.one_time_key,
        "x25519": invitation.pairing_key,
        "mlkem": invitation.kem_key,
        "mailboxes": [m.to_cbor() for m in invitation.mailboxes],
        "created": invitation.created_at,
        "expires": invitation.expires_at,
        "record": invitation.on_record,
        **({"pq": invitation.pq_key} if invitation.pq_key else {}),
    }


def resigned_invitation(identity: Identity, invitation: Invitation) -> SignedInvitation:
    return encode_invitation(invitation, identity.sign(invitation.signed_message()))


def test_body_map_mirrors_the_real_encoding(signed: SignedInvitation) -> None:
    assert cbor_encode(body_map(signed.invitation)) == signed.invitation.body()


def test_a_signed_invitation_parses_back_to_the_same_invitation(signed: SignedInvitation) -> None:
    parsed = parse_invitation(signed.blob)
    assert parsed.invitation == signed.invitation
    assert parsed.blob == signed.blob
    assert parsed.digest == signed.digest


def test_the_text_form_round_trips(signed: SignedInvitation) -> None:
    text = signed.text()
    assert text.startswith(TEXT_PREFIX)
    assert parse_invitation_text(text).invitation == signed.invitation


def test_the_text_form_survives_white_space_and_line_breaks(signed: SignedInvitation) -> None:
    text = signed.text()
    wrapped = "\n".join(text[i : i + 60] for i in range(0, len(text), 60))
    messy = "  \t" + wrapped.replace("\n", " \r\n\t ") + "\n\n  "
    assert parse_invitation_text(messy).blob == signed.blob


def test_the_digest_binds_the_exact_bytes(identity: Identity, signed: SignedInvitation) -> None:
    other = resigned_invitation(identity, replace(signed.invitation, name="another"))
    assert len(signed.digest) == 32
    assert other.digest != signed.digest


def test_text_without_the_prefix_is_refused(signed: SignedInvitation) -> None:
    with pytest.raises(InvalidInvitation, match="bc1-"):
        parse_invitation_text(signed.text()[len(TEXT_PREFIX) :])


@pytest.mark.parametrize("text", ["", "bc1-", "bc1-AAAA", "hello world", "bc2-" + "A" * 100])
def test_short_or_foreign_text_is_invalid_invitation(text: str) -> None:
    with pytest.raises(InvalidInvitation):
        parse_invitation_text(text)


def test_text_with_a_cut_off_end_is_invalid_invitation(signed: SignedInvitation) -> None:
    with pytest.raises(InvalidInvitation):
        parse_invitation_text(signed.text()[:-10])


def test_a_tampered_signature_is_invalid_invitation(signed: SignedInvitation) -> None:
    blob = bytearray(signed.blob)
    blob[-1] ^= 0x01
    with pytest.raises(InvalidInvitation):
        parse_invitation(bytes(blob))


@pytest.mark.parametrize("position", [0, 10, 100, 500, -100])
def test_a_tampered_body_byte_is_invalid_invitation(signed: SignedInvitation, position: int) -> None:
    body_len = len(signed.blob) - 6 - 64
    index = 6 + (position % body_len)
    blob = bytearray(signed.blob)
    blob[index] ^= 0x04
    with pytest.raises(InvalidInvitation):
        parse_invitation(bytes(blob))


def test_a_body_signed_by_another_key_is_invalid_invitation(
    identity: Identity, signed: SignedInvitation
) -> None:
    impostor = Identity.generate()
    forged = encode_invitation(signed.invitation, impostor.sign(signed.invitation.signed_message()))
    with pytest.raises(InvalidInvitation, match="forged"):
        parse_invitation(forged.blob)


def test_a_signature_without_the_context_prefix_is_refused(
    identity: Identity, signed: SignedInvitation
) -> None:
    body = signed.invitation.body()
    blob = assemble(body, identity.sign(body))
    with pytest.raises(InvalidInvitation):
        parse_invitation(blob)


def test_an_invitation_with_unknown_fields_is_refused_even_when_validly_signed(
    identity: Identity, signed: SignedInvitation
) -> None:
    fields = body_map(signed.invitation) | {"extra": 1}
    with pytest.raises(InvalidInvitation, match="unknown fields"):
        parse_invitation(resign(identity, cbor_encode(fields)))


@pytest.mark.parametrize(
    "missing", ["v", "line", "name", "ik", "ed", "otk", "x25519", "mlkem", "mailboxes", "record"]
)
def test_an_invitation_lacking_a_field_is_refused(
    identity: Identity, signed: SignedInvitation, missing: str
) -> None:
    fields = body_map(signed.invitation)
    del fields[missing]
    with pytest.raises(InvalidInvitation):
        parse_invitation(resign(identity, cbor_encode(fields)))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("line", b"short"),
        ("ik", b"\x00" * 31),
        ("mlkem", b"\x00" * 32),
        ("name", b"bytes-not-text"),
        ("created", "yesterday"),
        ("record", 1),
        ("v", True),
        ("mailboxes", {"url": RELAY}),
    ],
)
def test_an_invitation_field_of_the_wrong_type_or_size_is_refused(
    identity: Identity, signed: SignedInvitation, key: str, value: object
) -> None:
    fields = body_map(signed.invitation) | {key: value}
    with pytest.raises(InvalidInvitation):
        parse_invitation(resign(identity, cbor_encode(fields)))


def test_a_non_canonical_body_is_refused(identity: Identity, signed: SignedInvitation) -> None:
    import cbor2

    body = cbor2.dumps(body_map(signed.invitation), canonical=False)
    assert body != signed.invitation.body()  # insertion order differs from canonical order
    with pytest.raises(InvalidInvitation):
        parse_invitation(resign(identity, body))


def test_a_body_that_is_not_a_map_is_refused(identity: Identity) -> None:
    with pytest.raises(InvalidInvitation):
        parse_invitation(resign(identity, cbor_encode([1, 2, 3])))


def test_another_inner_version_is_refused(identity: Identity, signed: SignedInvitation) -> None:
    fields = body_map(signed.invitation) | {"v": 2}
    with pytest.raises(InvalidInvitation, match="version"):
        parse_invitation(resign(identity, cbor_encode(fields)))


def test_another_outer_version_is_refused(signed: SignedInvitation) -> None:
    blob = signed.blob[:3] + bytes([VERSION + 1]) + signed.blob[4:]
    with pytest.raises(InvalidInvitation, match="version"):
        parse_invitation(blob)


@pytest.mark.parametrize("cut", [0, 3, 69, -1, -64])
def test_a_truncated_invitation_is_refused(signed: SignedInvitation, cut: int) -> None:
    with pytest.raises(InvalidInvitation):
        parse_invitation(signed.blob[:cut])


def test_an_invitation_with_trailing_bytes_is_refused(signed: SignedInvitation) -> None:
    with pytest.raises(InvalidInvitation, match="trailing"):
        parse_invitation(signed.blob + b"\x00")


def test_wrong_magic_is_refused(signed: SignedInvitation) -> None:
    with pytest.raises(InvalidInvitation):
        parse_invitation(b"XYZ" + signed.blob[3:])


def _with_mailboxes(identity: Identity, signed: SignedInvitation, count: int) -> SignedInvitation:
    rng = FakeRng(b"mailboxes")
    caps = tuple(
        MailboxCapability(f"wss://relay{i}.example", rng.bytes(16), rng.bytes(32)) for i in range(count)
    )
    return resigned_invitation(identity, replace(signed.invitation, mailboxes=caps))


def test_up_to_eight_relays_are_accepted(identity: Identity, signed: SignedInvitation) -> None:
    many = _with_mailboxes(identity, signed, MAX_RELAYS)
    assert len(parse_invitation(many.blob).invitation.mailboxes) == MAX_RELAYS


@pytest.mark.parametrize("count", [0, MAX_RELAYS + 1])
def test_too_many_or_no_relays_are_refused(identity: Identity, signed: SignedInvitation, count: int) -> None:
    with pytest.raises(InvalidInvitation, match="relays"):
        parse_invitation(_with_mailboxes(identity, signed, count).blob)


@pytest.mark.parametrize("url", ["http://relay.example", "relay.example:443", "wss://" + "a" * 600])
def test_a_mailbox_without_a_valid_relay_url_is_refused(
    identity: Identity, signed: SignedInvitation, url: str
) -> None:
    cap = replace(signed.invitation.mailboxes[0], url=url)
    bad = resigned_invitation(identity, replace(signed.invitation, mailboxes=(cap,)))
    with pytest.raises(InvalidInvitation, match="relay URL"):
        parse_invitation(bad.blob)


def test_a_mailbox_that_is_not_a_map_is_refused(identity: Identity, signed: SignedInvitation) -> None:
    fields = body_map(signed.invitation) | {"mailboxes": [["wss://x", b"1" * 16, b"2" * 32]]}
    with pytest.raises(InvalidInvitation):
        parse_invitation(resign(identity, cbor_encode(fields)))


def test_a_station_name_longer_than_64_characters_is_refused(
    identity: Identity, signed: SignedInvitation
) -> None:
    bad = resigned_invitation(identity, replace(signed.invitation, name="n" * 65))
    with pytest.raises(InvalidInvitation, match="name"):
        parse_invitation(bad.blob)


def test_the_record_flag_survives_the_round_trip(identity: Identity, signed: SignedInvitation) -> None:
    on_record = resigned_invitation(
        identity, replace(signed.invitation, on_record=True, pq_key=mldsa_public(bytes(32)))
    )
    assert parse_invitation(on_record.blob).invitation.on_record is True
    assert parse_invitation(signed.blob).invitation.on_record is False


def test_encoding_refuses_a_signature_of_the_wrong_length(signed: SignedInvitation) -> None:
    with pytest.raises(ValueError):
        encode_invitation(signed.invitation, b"\x00" * 63)


def test_text_form_is_prefix_and_unpadded_base64url(signed: SignedInvitation) -> None:
    assert signed.text() == TEXT_PREFIX + b64u_encode(signed.blob)
    assert "=" not in signed.text()
