"""Self-certifying identity files: a station's public keys, as an arbiter receives them.

``backchannel identity --json`` writes one. It carries *every* public key the station's
fingerprint is computed from (the Olm Curve25519 identity key, the Ed25519 signing key, the
ML-DSA-65 record key), the fingerprint, the station's name, and an Ed25519 self-signature
over all of it. A verifier recomputes the fingerprint from the keys in the file and checks
the signature, so a file cannot carry a real station's name and fingerprint with other keys:
either the fingerprint no longer matches the keys or it is the real station's file. What the
file cannot prove by itself is *whose* station it is: the arbiter compares its fingerprint,
grouped in fives, with the half of the safety number the two operators read to each other
(``backchannel verify``), which binds the same three keys (:mod:`backchannel.proto.safety`).

The signed form is the file without ``signature``, as deterministic CBOR
(:func:`backchannel.proto.encoding.json_as_cbor`), after ``IDENTITY_CONTEXT``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backchannel.errors import BadSignature, ProtocolError, RecordInvalid
from backchannel.proto.encoding import json_as_cbor
from backchannel.proto.primitives import MLDSA_PUBLIC_LEN, ed25519_verify
from backchannel.proto.safety import grouped, station_fingerprint

IDENTITY_FORMAT = "backchannel-identity/1"
IDENTITY_CONTEXT = b"backchannel/v1 identity file\x00"
FIELDS = ("format", "name", "identity_key", "ed25519", "mldsa65", "fingerprint", "signature")


@dataclass(frozen=True)
class StationKeys:
    """One station's verified public keys."""

    name: str
    identity_key: bytes
    ed25519: bytes
    mldsa65: bytes
    fingerprint: str

    def grouped_fingerprint(self) -> str:
        """The 30 digits in six groups of five: one half of the safety number as read aloud."""
        return grouped(self.fingerprint)


def identity_message(unsigned: dict[str, Any]) -> bytes:
    return IDENTITY_CONTEXT + json_as_cbor(unsigned, "identity file")


def identity_document(
    name: str, identity_key: bytes, ed25519: bytes, mldsa65: bytes, sign: Callable[[bytes], bytes]
) -> dict[str, Any]:
    """The identity file of a station; ``sign`` is its Ed25519 signing function."""
    doc: dict[str, Any] = {
        "format": IDENTITY_FORMAT,
        "name": name,
        "identity_key": identity_key.hex(),
        "ed25519": ed25519.hex(),
        "mldsa65": mldsa65.hex(),
        "fingerprint": station_fingerprint(identity_key, ed25519, mldsa65),
    }
    doc["signature"] = sign(identity_message(doc)).hex()
    return doc


def verify_identity(doc: Any, what: str = "the key file") -> StationKeys:
    """Check an identity file; raise ``RecordInvalid`` naming what is wrong with it.

    Reasons: ``key-file`` (not an identity file, or malformed), ``key-file-fingerprint`` (the
    fingerprint is not the one its keys give: forged or damaged), ``key-file-signature``.
    """
    if not isinstance(doc, dict) or doc.get("format") != IDENTITY_FORMAT:
        raise RecordInvalid(
            f"{what} is not a {IDENTITY_FORMAT} file (make it with `backchannel identity --json`)",
            "key-file",
        )
    try:
        if set(doc) != set(FIELDS) or not all(isinstance(doc[k], str) for k in FIELDS):
            raise ValueError("it must hold exactly the fields " + ", ".join(FIELDS) + ", all text")
        identity_key, ed25519 = _hex(doc, "identity_key", 32), _hex(doc, "ed25519", 32)
        mldsa65, signature = _hex(doc, "mldsa65", MLDSA_PUBLIC_LEN), _hex(doc, "signature", 64)
        unsigned = {k: v for k, v in doc.items() if k != "signature"}
        message = identity_message(unsigned)
    except (ValueError, ProtocolError) as exc:
        raise RecordInvalid(f"{what} is malformed: {exc}", "key-file") from None
    expected = station_fingerprint(identity_key, ed25519, mldsa65)
    if doc["fingerprint"] != expected:
        raise RecordInvalid(
            f"{what} ({doc['name']!r}) is forged or damaged: its fingerprint is not the one its keys give "
            f"(the keys give {grouped(expected)})",
            "key-file-fingerprint",
        )
    try:
        ed25519_verify(ed25519, signature, message)
    except BadSignature:
        raise RecordInvalid(
            f"{what} ({doc['name']!r}) is forged or damaged: its self-signature does not verify",
            "key-file-signature",
        ) from None
    return StationKeys(doc["name"], identity_key, ed25519, mldsa65, expected)


def _hex(doc: dict[str, Any], key: str, size: int) -> bytes:
    value = bytes.fromhex(doc[key])
    if len(value) != size or doc[key] != value.hex():
        raise ValueError(f"{key} must be {size} bytes in lowercase hex")
    return value
