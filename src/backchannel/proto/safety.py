"""The safety number both operators read aloud to each other to verify a line.

Each station's half is 30 digits derived from its Olm identity keys (Curve25519 and
Ed25519) by iterated SHA-512, as Signal does; the two halves are put in ascending order so
both screens show the same 60 digits, grouped in twelve blocks of five: readable aloud in
any language. If anyone in between substituted a key, the numbers differ.
"""

from __future__ import annotations

import hashlib

ITERATIONS = 5200
VERSION = b"\x00\x01"


def station_fingerprint(identity_key: bytes, signing_key: bytes) -> str:
    """Thirty decimal digits for one station's identity."""
    data = VERSION + identity_key + signing_key
    digest = data
    for _ in range(ITERATIONS):
        digest = hashlib.sha512(digest + data).digest()
    digits = []
    for i in range(6):
        chunk = int.from_bytes(digest[i * 5 : i * 5 + 5], "big")
        digits.append(f"{chunk % 100000:05d}")
    return "".join(digits)


def safety_number(ours: tuple[bytes, bytes], theirs: tuple[bytes, bytes]) -> str:
    """Sixty digits, the same on both sides of the line."""
    a = station_fingerprint(*ours)
    b = station_fingerprint(*theirs)
    return "".join(sorted((a, b)))


def grouped(number: str, size: int = 5) -> str:
    return " ".join(number[i : i + size] for i in range(0, len(number), size))
