"""The pairing invitation: everything the accepter needs to open a line, signed by the inviter.

An invitation is created at one station and carried to the other out of band (a file, a
line of text, a QR code). It is a *secret capability*: it holds the private key that lets
its bearer post into the inviter's mailbox, and the keys from which the line keys are
agreed. It is single-use: the inviter honours the first accepter and refuses any other.

Binary form::

    magic "BCI" | version (1) = 1 | body length (2, big-endian) | body | signature (64)

``body`` is a canonical CBOR map (see docs/PROTOCOL.md §Invitation); ``signature`` is
Ed25519 by the inviter's identity signing key over ``INVITATION_CONTEXT | body``. The text
form is ``bc1-`` followed by the binary form in unpadded base64url.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from backchannel.errors import InvalidInvitation, ProtocolError, RemoteError
from backchannel.proto.encoding import (
    b64u_decode,
    b64u_encode,
    cbor_encode,
    cbor_map,
    field,
    fixed_bytes,
)
from backchannel.proto.primitives import MLDSA_PUBLIC_LEN, MLKEM_PUBLIC_LEN, ed25519_verify, sha256
from backchannel.proto.relay_pin import split_pin

MAGIC = b"BCI"
VERSION = 1
TEXT_PREFIX = "bc1-"
INVITATION_CONTEXT = b"backchannel/v1 invitation\x00"
MAX_RELAYS = 8
#: Names (of stations, lines, operators) are limited in UTF-8 bytes, the unit frames count in.
MAX_NAME_BYTES = 64


def valid_name(name: str) -> bool:
    """1 to 64 UTF-8 bytes of printable text: what every name on the wire must be."""
    return bool(name) and name.isprintable() and len(name.encode("utf-8")) <= MAX_NAME_BYTES


@dataclass(frozen=True)
class MailboxCapability:
    """The right to post into one mailbox on one relay: given to the *other* station."""

    url: str
    send_id: bytes
    send_key: bytes  # Ed25519 private seed; signs AUTH_SEND for this mailbox

    def to_cbor(self) -> dict[str, Any]:
        return {"url": self.url, "send_id": self.send_id, "send_key": self.send_key}

    @classmethod
    def from_cbor(cls, obj: Any, what: str = "mailbox capability") -> MailboxCapability:
        if not isinstance(obj, dict):
            raise ProtocolError(f"the {what} is not a map")
        url = field(obj, "url", str, what)
        if not url.startswith(("ws://", "wss://")) or len(url) > 512 or not url.isprintable():
            raise ProtocolError(f"the {what} names no valid relay URL")
        split_pin(url, f"relay URL of the {what}")  # (a pin, if any, is well formed: §3.1)
        return cls(url, fixed_bytes(obj, "send_id", 16, what), fixed_bytes(obj, "send_key", 32, what))


@dataclass(frozen=True)
class Invitation:
    line_id: bytes
    name: str
    identity_key: bytes  # Olm Curve25519 identity key
    signing_key: bytes  # Olm Ed25519 identity key
    one_time_key: bytes  # Olm Curve25519 one-time key
    pairing_key: bytes  # X25519 public key of the hybrid key agreement
    kem_key: bytes  # ML-KEM-768 encapsulation key of the hybrid key agreement
    mailboxes: tuple[MailboxCapability, ...]
    created_at: int  # ms since epoch
    expires_at: int  # ms since epoch
    on_record: bool = False
    pq_key: bytes = b""  # the inviter's ML-DSA-65 public key, present exactly when on the record

    def body(self) -> bytes:
        extra: dict[str, bytes] = {"pq": self.pq_key} if self.pq_key else {}
        return cbor_encode(
            {
                **extra,
                "v": VERSION,
                "line": self.line_id,
                "name": self.name,
                "ik": self.identity_key,
                "ed": self.signing_key,
                "otk": self.one_time_key,
                "x25519": self.pairing_key,
                "mlkem": self.kem_key,
                "mailboxes": [m.to_cbor() for m in self.mailboxes],
                "created": self.created_at,
                "expires": self.expires_at,
                "record": self.on_record,
            }
        )

    def signed_message(self) -> bytes:
        return INVITATION_CONTEXT + self.body()


@dataclass(frozen=True)
class SignedInvitation:
    invitation: Invitation
    blob: bytes  # the exact binary form, as signed

    @property
    def digest(self) -> bytes:
        """SHA-256 of the binary form: salts the line key schedule, binding keys to it."""
        return sha256(self.blob)

    def text(self) -> str:
        return TEXT_PREFIX + b64u_encode(self.blob)


def encode_invitation(invitation: Invitation, signature: bytes) -> SignedInvitation:
    body = invitation.body()
    if len(signature) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    blob = MAGIC + bytes([VERSION]) + struct.pack(">H", len(body)) + body + signature
    return SignedInvitation(invitation, blob)


def parse_invitation_text(text: str) -> SignedInvitation:
    """Parse the one-line text form (surrounding white space and line breaks are ignored)."""
    clean = "".join(text.split())
    if not clean.startswith(TEXT_PREFIX):
        raise InvalidInvitation("this is not a backchannel invitation (it must start with 'bc1-')")
    try:
        blob = b64u_decode(clean[len(TEXT_PREFIX) :], "invitation")
    except RemoteError as exc:
        raise InvalidInvitation(f"the invitation is damaged: {exc}") from None
    return parse_invitation(blob)


def parse_invitation(blob: bytes) -> SignedInvitation:
    """Parse and verify the binary form; every failure is an ``InvalidInvitation``."""
    if len(blob) < 6 + 64 or blob[:3] != MAGIC:
        raise InvalidInvitation("the invitation is truncated or is not an invitation")
    if blob[3] != VERSION:
        raise InvalidInvitation(f"invitation version {blob[3]} is not supported")
    (length,) = struct.unpack(">H", blob[4:6])
    if len(blob) != 6 + length + 64:
        raise InvalidInvitation("the invitation is truncated or has trailing bytes")
    body, signature = blob[6 : 6 + length], blob[6 + length :]
    try:
        obj = cbor_map(body, "invitation")
        if field(obj, "v", int, "invitation") != VERSION:
            raise InvalidInvitation("the invitation's inner version is not supported")
        raw_mailboxes = field(obj, "mailboxes", list, "invitation")
        if not 1 <= len(raw_mailboxes) <= MAX_RELAYS:
            raise InvalidInvitation("the invitation must name between 1 and 8 relays")
        invitation = Invitation(
            line_id=fixed_bytes(obj, "line", 16, "invitation"),
            name=field(obj, "name", str, "invitation"),
            identity_key=fixed_bytes(obj, "ik", 32, "invitation"),
            signing_key=fixed_bytes(obj, "ed", 32, "invitation"),
            one_time_key=fixed_bytes(obj, "otk", 32, "invitation"),
            pairing_key=fixed_bytes(obj, "x25519", 32, "invitation"),
            kem_key=fixed_bytes(obj, "mlkem", MLKEM_PUBLIC_LEN, "invitation"),
            mailboxes=tuple(MailboxCapability.from_cbor(m) for m in raw_mailboxes),
            created_at=field(obj, "created", int, "invitation"),
            expires_at=field(obj, "expires", int, "invitation"),
            on_record=field(obj, "record", bool, "invitation"),
            pq_key=fixed_bytes(obj, "pq", MLDSA_PUBLIC_LEN, "invitation") if "pq" in obj else b"",
        )
        if invitation.on_record != bool(invitation.pq_key):
            raise InvalidInvitation("an invitation on the record must carry an ML-DSA-65 key, and only then")
        if not all(0 <= t < 2**63 for t in (invitation.created_at, invitation.expires_at)):
            raise InvalidInvitation("the invitation's times are out of range")
        if not valid_name(invitation.name):
            raise InvalidInvitation(
                "the station name in the invitation is not 1 to 64 bytes of printable text"
            )
        if invitation.body() != body:
            raise InvalidInvitation("the invitation carries unknown fields")
        ed25519_verify(invitation.signing_key, signature, invitation.signed_message())
    except InvalidInvitation:
        raise
    except RemoteError as exc:
        raise InvalidInvitation(f"the invitation is damaged or forged: {exc}") from None
    return SignedInvitation(invitation, blob)
