"""The circuit frame: what a relay stores and forwards, one fixed size, opaque without a key.

Theory of operation
-------------------
The envelope (:mod:`backchannel.proto.envelope`) carries the line id, the direction and the
sequence number in clear, and its size tells a receipt from a message. So it never travels as it
is: each circuit (one relay URL of one line) splits it into chunks and wraps each chunk, under
keys of that circuit, in a frame of exactly :data:`FRAME_SIZE` bytes. The relay sees only that
frame and the mailbox it is in; two relays never see a common byte string for the same entry,
because their keys differ (the URL is in the key derivation).

Layout of a frame (PROTOCOL.md §7.1; integers big-endian)::

    nonce (12) | ChaCha20-Poly1305(aead key, nonce, plaintext (4 068), ad = "") (4 068 + tag 16)

    plaintext, FRAGMENT: kind 1 (1) | seq u64 (8) | index (1) | count (1) | length u16 (2)
                         | chunk (length) | zero bytes up to 4 068
    plaintext, COVER:    kind 0 (1) | 16 random bytes | zero bytes up to 4 068

The nonce is *synthetic*: ``HMAC-SHA256(nonce key, plaintext)[:12]``. The same fragment on the
same circuit therefore gives the same 4 096 bytes every time (the relay's idempotent SEND and its
``msg_id`` keep working for retries and resends), and two different plaintexts never share a
nonce under one key, even after a store is restored from a backup. Cover frames carry 16 random
bytes (passed in: this module has no randomness) so each is a fresh plaintext.

The receiver accepts a frame only if it is exactly 4 096 bytes, opens under the circuit's key
(else :class:`DecryptError`, which says nothing more), and its plaintext is canonical: known
kind, fields in range, zero padding, and the nonce equal to the synthetic nonce of the plaintext
(else :class:`ProtocolError`). Only the holder of the key can produce a frame that opens, so the
detailed layout errors are no oracle.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass, field

from backchannel.errors import FrameTooLarge, InvalidArgument, MisaddressedFrame, ProtocolError
from backchannel.proto import envelope as envelope_codec
from backchannel.proto.primitives import (
    AEAD_KEY_LEN,
    AEAD_NONCE_LEN,
    AEAD_TAG_LEN,
    aead_open,
    aead_seal,
    hkdf,
    hmac_sha256,
)

#: The SEND payload of every frame of every line, whatever it carries.
FRAME_SIZE = 4096
NONCE = AEAD_NONCE_LEN  # 12
TAG = AEAD_TAG_LEN  # 16
PLAINTEXT = FRAME_SIZE - NONCE - TAG  # 4 068
#: kind (1) | seq (8) | index (1) | count (1) | length (2)
FRAGMENT_HEADER = struct.Struct(">BQBBH")
HEADER = FRAGMENT_HEADER.size  # 13
CHUNK = PLAINTEXT - HEADER  # 4 055
#: ceil(33 945 / 4 055): the largest envelope (a hello of the largest padding) fits in 9 frames.
MAX_FRAGMENTS = 9
MAX_SPLIT = MAX_FRAGMENTS * CHUNK
COVER_RANDOM = 16
MAX_SEQ = 2**64 - 1

KIND_COVER = 0
KIND_FRAGMENT = 1

CIRCUIT_INFO = b"backchannel/v1 circuit\x00"
HELLO_CIRCUIT_INFO = b"backchannel/v1 hello circuit\x00"


@dataclass(frozen=True)
class CircuitKeys:
    """The two keys of one circuit and direction: the AEAD key and the synthetic-nonce key."""

    aead: bytes = field(repr=False)
    nonce: bytes = field(repr=False)


@dataclass(frozen=True)
class Fragment:
    """One authenticated chunk of the envelope of ``seq``: chunk ``index`` of ``count``."""

    seq: int
    index: int
    count: int
    chunk: bytes


@dataclass(frozen=True)
class Cover:
    """An authenticated cover frame: it carries nothing, but proves the circuit works."""


def _derive(ikm: bytes, info: bytes, url: str) -> CircuitKeys:
    if len(ikm) != AEAD_KEY_LEN:
        raise InvalidArgument(f"a circuit key is derived from a {AEAD_KEY_LEN}-byte key, not {len(ikm)}")
    okm = hkdf(ikm, b"", info + url.encode("utf-8"), 2 * AEAD_KEY_LEN)
    return CircuitKeys(aead=okm[:AEAD_KEY_LEN], nonce=okm[AEAD_KEY_LEN:])


def circuit_keys(line_key: bytes, url: str) -> CircuitKeys:
    """The keys of the circuit ``url`` for the direction whose line key is ``line_key``."""
    return _derive(line_key, CIRCUIT_INFO, url)


def hello_keys(invitation_send_key: bytes, url: str) -> CircuitKeys:
    """The keys that wrap the accepter's hello on ``url``: from the inviter's mailbox send key
    on that relay, a secret of the invitation (the inviter has no line keys before the hello)."""
    return _derive(invitation_send_key, HELLO_CIRCUIT_INFO, url)


def split(envelope: bytes) -> list[bytes]:
    """Cut an envelope into 1 … 9 chunks; every chunk but the last is :data:`CHUNK` bytes."""
    if not envelope:
        raise ProtocolError("an empty envelope cannot be sent")
    if len(envelope) > MAX_SPLIT:
        raise FrameTooLarge(
            f"an envelope of {len(envelope)} bytes exceeds {MAX_SPLIT} bytes ({MAX_FRAGMENTS} frames)"
        )
    return [envelope[i : i + CHUNK] for i in range(0, len(envelope), CHUNK)]


def _seal(keys: CircuitKeys, plaintext: bytes) -> bytes:
    nonce = hmac_sha256(keys.nonce, plaintext)[:NONCE]
    return nonce + aead_seal(keys.aead, nonce, plaintext, b"")


def _pad(body: bytes) -> bytes:
    return body + bytes(PLAINTEXT - len(body))


def seal_fragments(keys: CircuitKeys, seq: int, envelope: bytes) -> list[bytes]:
    """Wrap the envelope of ``seq`` for one circuit: one :data:`FRAME_SIZE`-byte frame per chunk.

    Deterministic: the same arguments always give the same frames (see the module docstring)."""
    if not 1 <= seq <= MAX_SEQ:
        raise ProtocolError(f"sequence number {seq} is out of range")
    chunks = split(envelope)
    count = len(chunks)
    return [
        _seal(keys, _pad(FRAGMENT_HEADER.pack(KIND_FRAGMENT, seq, index, count, len(chunk)) + chunk))
        for index, chunk in enumerate(chunks)
    ]


def seal_cover(keys: CircuitKeys, random16: bytes) -> bytes:
    """A cover frame for one circuit; ``random16`` must be 16 fresh random bytes."""
    if len(random16) != COVER_RANDOM:
        raise InvalidArgument(f"a cover frame takes {COVER_RANDOM} random bytes, not {len(random16)}")
    return _seal(keys, _pad(bytes([KIND_COVER]) + random16))


def open_frame(keys: CircuitKeys, frame: bytes) -> Fragment | Cover:
    """Authenticate and parse one circuit frame.

    Raises :class:`DecryptError` when the frame does not open under ``keys`` (a frame of
    another circuit, line or direction, or tampered), :class:`FrameTooLarge` /
    :class:`ProtocolError` when its size or its plaintext is not canonical."""
    if len(frame) > FRAME_SIZE:
        raise FrameTooLarge(f"a circuit frame of {len(frame)} bytes; every frame is {FRAME_SIZE}")
    if len(frame) != FRAME_SIZE:
        raise ProtocolError(f"a circuit frame of {len(frame)} bytes; every frame is {FRAME_SIZE}")
    nonce = frame[:NONCE]
    plaintext = aead_open(keys.aead, nonce, frame[NONCE:], b"")
    if not hmac.compare_digest(nonce, hmac_sha256(keys.nonce, plaintext)[:NONCE]):
        raise ProtocolError("the circuit frame's nonce is not the synthetic nonce of its plaintext")
    kind = plaintext[0]
    if kind == KIND_COVER:
        if any(plaintext[1 + COVER_RANDOM :]):
            raise ProtocolError("the cover frame's padding is not zero")
        return Cover()
    if kind != KIND_FRAGMENT:
        raise ProtocolError(f"unknown circuit frame kind {kind}")
    _, seq, index, count, length = FRAGMENT_HEADER.unpack_from(plaintext)
    if seq < 1:
        raise ProtocolError("fragment sequence numbers start at 1")
    if not 1 <= count <= MAX_FRAGMENTS or index >= count:
        raise ProtocolError(f"fragment {index} of {count} is out of range")
    if not 1 <= length <= CHUNK or (index < count - 1 and length != CHUNK):
        raise ProtocolError(f"fragment {index} of {count} has a wrong length {length}")
    end = HEADER + length
    if any(plaintext[end:]):
        raise ProtocolError("the fragment's padding is not zero")
    return Fragment(seq=seq, index=index, count=count, chunk=plaintext[HEADER:end])


def check_envelope(envelope: bytes, line_id: bytes, direction: int, seq: int) -> envelope_codec.Sealed:
    """Parse a reassembled envelope and check it belongs where its fragments came from.

    The mailbox names the line and the direction, the fragments name the seq; the envelope
    must agree with all three (else :class:`MisaddressedFrame`; unparsable: :class:`ProtocolError`)."""
    sealed = envelope_codec.parse(envelope)
    header = sealed.header
    if header.line_id != line_id or header.direction != direction:
        raise MisaddressedFrame("the reassembled envelope belongs to another line or direction")
    if header.seq != seq:
        raise MisaddressedFrame("the reassembled envelope's sequence number is not its fragments'")
    return sealed
