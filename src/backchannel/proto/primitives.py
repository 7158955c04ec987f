"""Thin, typed wrappers over the audited primitives in ``cryptography``.

Nothing here invents cryptography: each function calls one library primitive and maps its
exceptions into the project's error tree. Randomness always comes in as arguments (from an
injected :class:`~backchannel.clock.Rng`), so callers stay deterministic under test.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import (
    MLKEM768PrivateKey,
    MLKEM768PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.errors import BadSignature, ConfigError, DecryptError, ProtocolError

AEAD_KEY_LEN = 32
AEAD_NONCE_LEN = 12
AEAD_TAG_LEN = 16
MLKEM_PUBLIC_LEN = 1184
MLKEM_CIPHERTEXT_LEN = 1088
MLKEM_SEED_LEN = 64


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104)."""
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869), extract and expand."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """ChaCha20-Poly1305 (RFC 8439)."""
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, ad)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    """Open a ChaCha20-Poly1305 box; any failure is a ``DecryptError`` that says nothing more."""
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, ad)
    except (InvalidTag, ValueError):
        raise DecryptError() from None


# ---- Ed25519 ---------------------------------------------------------------------------


def ed25519_public_from_seed(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> None:
    """Raise ``BadSignature`` unless ``signature`` is valid for ``message`` under ``public``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise BadSignature() from None


# ---- ML-DSA-65: post-quantum signatures for the record --------------------------------------

MLDSA_SEED_LEN = 32
MLDSA_PUBLIC_LEN = 1952
MLDSA_SIGNATURE_LEN = 3309


def mldsa_public(seed: bytes) -> bytes:
    return MLDSA65PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()


def mldsa_sign(seed: bytes, message: bytes) -> bytes:
    return MLDSA65PrivateKey.from_seed_bytes(seed).sign(message)


def mldsa_verify(public: bytes, signature: bytes, message: bytes) -> None:
    """Raise ``BadSignature`` unless the ML-DSA-65 signature is valid."""
    try:
        MLDSA65PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise BadSignature() from None


# ---- X25519 and ML-KEM-768: the hybrid key agreement of pairing --------------------------


def x25519_public(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def x25519(secret: bytes, their_public: bytes) -> bytes:
    try:
        return X25519PrivateKey.from_private_bytes(secret).exchange(
            X25519PublicKey.from_public_bytes(their_public)
        )
    except ValueError:
        raise ProtocolError("an X25519 public key is not valid") from None


def mlkem_supported() -> bool:
    """Whether the linked OpenSSL provides ML-KEM-768 (checked at start-up)."""
    try:
        MLKEM768PrivateKey.from_seed_bytes(bytes(MLKEM_SEED_LEN))
    except Exception:
        return False
    return True


def require_mlkem() -> None:
    if not mlkem_supported():
        raise ConfigError("this build of the cryptography library lacks ML-KEM-768; install cryptography>=50")


def mlkem_public(seed: bytes) -> bytes:
    return MLKEM768PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()


def mlkem_encapsulate(public: bytes) -> tuple[bytes, bytes]:
    """Return ``(shared_secret, ciphertext)``. (Encapsulation randomness is the library's.)"""
    try:
        key = MLKEM768PublicKey.from_public_bytes(public)
    except ValueError:
        raise ProtocolError("an ML-KEM-768 public key is not valid") from None
    shared, ciphertext = key.encapsulate()
    return shared, ciphertext


def mlkem_decapsulate(seed: bytes, ciphertext: bytes) -> bytes:
    try:
        return MLKEM768PrivateKey.from_seed_bytes(seed).decapsulate(ciphertext)
    except ValueError:
        raise ProtocolError("an ML-KEM-768 ciphertext is not valid") from None


# ---- Argon2id: the passphrase KDF of the keystore -----------------------------------------


def argon2id(passphrase: bytes, salt: bytes, *, memory_kib: int, iterations: int, lanes: int) -> bytes:
    return Argon2id(salt=salt, length=32, iterations=iterations, lanes=lanes, memory_cost=memory_kib).derive(
        passphrase
    )
