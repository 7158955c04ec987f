"""The keystore: the station's master secrets, encrypted at rest under a passphrase.

Theory of operation
-------------------
The keystore file holds one random 32-byte *store key*, sealed with ChaCha20-Poly1305 under
a key derived from the operator's passphrase by Argon2id (memory-hard, so a stolen disk does
not yield to a GPU farm). The store key in turn encrypts every secret in the station's
database: the Olm account and sessions (vodozemac pickles), the line keys, the mailbox keys
and the message bodies. Without the passphrase the database is ciphertext plus metadata.

File layout (big-endian)::

    magic "BCKS" | version (1) = 1 | memory KiB (4) | iterations (4) | lanes (1)
    | salt (16) | nonce (12) | ciphertext of the 32-byte store key + tag (16)

The header is the AEAD's associated data: changing the parameters breaks the seal.
Writes go to a temporary file (0600) that is fsynced and renamed over the old one, and the
directory is fsynced after the rename: the file holds the old passphrase's seal or the new
one's, never neither (:func:`backchannel.station.private.replace_private`).

A new passphrase must be at least :data:`MIN_PASSPHRASE` characters: the keystore is only as
strong as the passphrase once the disk is stolen, Argon2id or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from backchannel.clock import Rng, SystemRng
from backchannel.errors import CorruptKeystore, DecryptError, InvalidArgument, WrongPassphrase
from backchannel.proto.primitives import aead_open, aead_seal, argon2id
from backchannel.station.private import FILE_MODE, replace_private

MAGIC = b"BCKS"
VERSION = 1
HEADER = struct.Struct(">4sBIIB16s12s")
#: A damaged header must not make opening the keystore allocate gigabytes.
MAX_MEMORY_KIB = 1024 * 1024
#: The shortest passphrase ``init`` and ``backchannel passphrase`` accept, in characters.
MIN_PASSPHRASE = 12
MAX_PASSPHRASE = 1024


def check_new_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too short to protect a stolen keystore (or absurdly long)."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise InvalidArgument(
            f"the passphrase must be at least {MIN_PASSPHRASE} characters long: "
            "a few words are easier to remember than a short password and much harder to guess"
        )
    if len(passphrase) > MAX_PASSPHRASE:
        raise InvalidArgument(f"the passphrase must be at most {MAX_PASSPHRASE} characters long")


@dataclass(frozen=True)
class KdfParams:
    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 2


#: The parameters a new keystore gets. Production never changes them; a test run that creates
#: hundreds of keystores injects light ones with :func:`set_default_params` (the test support
#: does it in its own process and, through ``sitecustomize``, in the processes it starts), so
#: no switch in the environment can weaken a real station's keystore.
_default_params = KdfParams()


def default_params() -> KdfParams:
    return _default_params


def set_default_params(params: KdfParams) -> None:
    """Replace the parameters new keystores get (for test harnesses only)."""
    global _default_params
    _default_params = params


def create_keystore(
    path: Path, passphrase: str, *, params: KdfParams | None = None, rng: Rng | None = None
) -> bytes:
    """Create a new keystore with a fresh store key; returns the store key."""
    rng = rng or SystemRng()
    params = params or default_params()
    store_key = rng.bytes(32)
    _write(path, passphrase, store_key, params, rng)
    return store_key


def open_keystore(path: Path, passphrase: str) -> bytes:
    """Return the store key, or raise ``WrongPassphrase`` / ``CorruptKeystore``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptKeystore(f"the keystore {path} cannot be read: {exc.strerror}") from None
    if len(data) != HEADER.size + 32 + 16:
        raise CorruptKeystore(f"the keystore {path} is damaged (wrong size)")
    magic, version, memory, iterations, lanes, salt, nonce = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise CorruptKeystore(f"{path} is not a backchannel keystore of a known version")
    if not (8 * lanes <= memory <= MAX_MEMORY_KIB and 1 <= iterations <= 100 and 1 <= lanes <= 16):
        raise CorruptKeystore(f"the keystore {path} has implausible KDF parameters")
    try:
        key = argon2id(
            passphrase.encode("utf-8"), salt, memory_kib=memory, iterations=iterations, lanes=lanes
        )
    except ValueError:
        raise CorruptKeystore(f"the keystore {path} has KDF parameters Argon2id refuses") from None
    try:
        return aead_open(key, nonce, data[HEADER.size :], data[: HEADER.size])
    except DecryptError:
        raise WrongPassphrase() from None


def change_passphrase(path: Path, old: str, new: str, *, params: KdfParams | None = None) -> None:
    """Seal the same store key under ``new``; the database is untouched (it uses the store key).

    Safe while the station runs: the running station holds the store key in memory and never
    reads the keystore again; it opens with the new passphrase at its next start. Two changes
    at once are serialised by a lock file, so the second one sees the first one's passphrase
    (and fails with ``WrongPassphrase``) instead of silently undoing it.
    """
    with _locked(path.with_suffix(".lock")):
        store_key = open_keystore(path, old)
        check_new_passphrase(new)
        _write(path, new, store_key, params or default_params(), SystemRng())


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, passphrase: str, store_key: bytes, params: KdfParams, rng: Rng) -> None:
    salt, nonce = rng.bytes(16), rng.bytes(12)
    header = HEADER.pack(MAGIC, VERSION, params.memory_kib, params.iterations, params.lanes, salt, nonce)
    key = argon2id(
        passphrase.encode("utf-8"),
        salt,
        memory_kib=params.memory_kib,
        iterations=params.iterations,
        lanes=params.lanes,
    )
    replace_private(path, header + aead_seal(key, nonce, store_key, header))


class AtRest:
    """Seals individual secrets and message bodies under the store key for the database.

    Each value gets a fresh random nonce; the associated data names what the value is (for
    example the line id and sequence number), so a value cannot be moved to another row.
    """

    def __init__(self, store_key: bytes, rng: Rng | None = None) -> None:
        self.store_key = store_key
        self._rng = rng or SystemRng()

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = self._rng.bytes(12)
        return nonce + aead_seal(self.store_key, nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        try:
            return aead_open(self.store_key, sealed[:12], sealed[12:], context)
        except DecryptError:
            raise CorruptKeystore("a value in the station database does not open with this key") from None
