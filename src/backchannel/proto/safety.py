"""The safety number both operators read aloud to each other to verify a line.

Each station's half is 30 digits derived from every public key that speaks for it: its Olm
identity keys (Curve25519 and Ed25519) and, on a line on the record, its ML-DSA-65 record
key, by iterated SHA-512 as Signal does. The two halves are put in ascending order so both
screens show the same 60 digits, grouped in twelve blocks of five: readable aloud in any
language. If anyone in between substituted a key, the numbers differ.

Binding the record key matters for the record: an arbiter holding a station's identity file
recomputes the same 30 digits (:mod:`backchannel.proto.identity`) and compares them with the
half the operators read to each other, so a key file with another record key cannot pass.
"""

from __future__ import annotations

import hashlib

ITERATIONS = 5200
VERSION = b"\x00\x02"  # 0x0001 bound only the two Olm keys

Keys = tuple[bytes, bytes, bytes]  # (Curve25519 identity key, Ed25519 signing key, ML-DSA-65 key or b"")


def station_fingerprint(identity_key: bytes, signing_key: bytes, record_key: bytes) -> str:
    """Thirty decimal digits for one station's identity (``record_key`` is b"" off the record)."""
    data = VERSION + identity_key + signing_key + record_key
    digest = data
    for _ in range(ITERATIONS):
        digest = hashlib.sha512(digest + data).digest()
    digits = []
    for i in range(6):
        chunk = int.from_bytes(digest[i * 5 : i * 5 + 5], "big")
        digits.append(f"{chunk % 100000:05d}")
    return "".join(digits)


def safety_number(ours: Keys, theirs: Keys) -> str:
    """Sixty digits, the same on both sides of the line."""
    a = station_fingerprint(*ours)
    b = station_fingerprint(*theirs)
    return "".join(sorted((a, b)))


def grouped(number: str, size: int = 5) -> str:
    return " ".join(number[i : i + size] for i in range(0, len(number), size))
