"""The line key schedule: from the pairing's hybrid secret to the envelope keys.

The accepter combines an X25519 agreement and an ML-KEM-768 encapsulation against the two
public keys in the invitation; the inviter repeats them with its private halves. Both feed
HKDF-SHA256, salted with the digest of the signed invitation, so the keys are bound to that
exact invitation. An attacker must break *both* X25519 and ML-KEM-768 to recover them: this
outer layer is what protects recorded traffic against a future quantum computer, since Olm
inside it is classical.

Optional pre-shared key material (the hotline's "key tape") is appended to the input key
material when both stations hold it; absent, it is the empty string.
"""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.proto.primitives import hkdf

LINE_KEYS_INFO = b"backchannel/v1 line keys\x00"


@dataclass(frozen=True)
class LineKeys:
    """One AEAD key per direction. Direction 0 is inviter to accepter, 1 the reverse."""

    to_accepter: bytes
    to_inviter: bytes

    def for_direction(self, direction: int) -> bytes:
        return self.to_accepter if direction == 0 else self.to_inviter


def derive_line_keys(
    x25519_secret: bytes,
    mlkem_secret: bytes,
    invitation_digest: bytes,
    line_id: bytes,
    preshared: bytes = b"",
) -> LineKeys:
    ikm = x25519_secret + mlkem_secret + preshared
    okm = hkdf(ikm, salt=invitation_digest, info=LINE_KEYS_INFO + line_id, length=64)
    return LineKeys(to_accepter=okm[:32], to_inviter=okm[32:])
