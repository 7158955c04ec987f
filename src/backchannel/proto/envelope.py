"""The envelope: the outer, authenticated layer around every Olm message of a line.

Theory of operation
-------------------
Olm must be fed strictly in order, and it keeps only 40 skipped keys per chain. So each
frame carries a per-direction sequence number in a header that is authenticated *before*
Olm sees anything: a relay that forges, swaps or replays sequence numbers is caught here
and cannot make a station burn message keys. The body is padded to one of a few fixed sizes
so an observer learns little from lengths.

Layout (all integers big-endian)::

    offset size  field
    0      2     magic "BC"
    2      1     version = 1
    3      1     kind: 1 = hello, 2 = data
    4      16    line id
    20     1     direction: 0 = inviter to accepter, 1 = accepter to inviter
    21     8     sequence number (first frame of each direction is 1)
    29     12    AEAD nonce
    41     ...   hello only: accepter X25519 public key (32) | ML-KEM-768 ciphertext (1088)
    ...    ...   ChaCha20-Poly1305 ciphertext of the padded inner, tag (16) at the end

The associated data is every byte before the ciphertext. The padded inner is
``length (4) | inner | zero bytes`` filling exactly one of :data:`BUCKETS`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from backchannel.errors import FrameTooLarge, MessageTooLarge, ProtocolError, UnsupportedVersion
from backchannel.proto.primitives import (
    AEAD_NONCE_LEN,
    AEAD_TAG_LEN,
    MLKEM_CIPHERTEXT_LEN,
    aead_open,
    aead_seal,
)

MAGIC = b"BC"
VERSION = 1
HEADER = struct.Struct(">2sBB16sBQ12s")
HEADER_LEN = HEADER.size  # 41
HELLO_EXTRA_LEN = 32 + MLKEM_CIPHERTEXT_LEN
BUCKETS = (256, 1024, 4096, 16384, 32768)
LENGTH_PREFIX = 4
MAX_INNER = BUCKETS[-1] - LENGTH_PREFIX
MAX_ENVELOPE = HEADER_LEN + HELLO_EXTRA_LEN + BUCKETS[-1] + AEAD_TAG_LEN


class Kind(IntEnum):
    HELLO = 1
    DATA = 2


@dataclass(frozen=True)
class Header:
    kind: Kind
    line_id: bytes
    direction: int
    seq: int
    nonce: bytes
    hello_key: bytes = b""  # hello only
    hello_kem: bytes = b""  # hello only

    def encode(self) -> bytes:
        head = HEADER.pack(MAGIC, VERSION, self.kind, self.line_id, self.direction, self.seq, self.nonce)
        if self.kind is Kind.HELLO:
            return head + self.hello_key + self.hello_kem
        return head


@dataclass(frozen=True)
class Sealed:
    """A parsed but not yet opened envelope: enough to route and deduplicate it."""

    header: Header
    associated: bytes
    ciphertext: bytes


def pad(inner: bytes) -> bytes:
    need = LENGTH_PREFIX + len(inner)
    for size in BUCKETS:
        if need <= size:
            return struct.pack(">I", len(inner)) + inner + bytes(size - need)
    raise MessageTooLarge(f"the encrypted message needs {need} bytes; the largest frame holds {BUCKETS[-1]}")


def unpad(padded: bytes) -> bytes:
    if len(padded) not in BUCKETS:
        raise ProtocolError("the envelope body is not one of the padding sizes")
    (length,) = struct.unpack(">I", padded[:LENGTH_PREFIX])
    if length > len(padded) - LENGTH_PREFIX:
        raise ProtocolError("the envelope's inner length is out of range")
    end = LENGTH_PREFIX + length
    if any(padded[end:]):
        raise ProtocolError("the envelope's padding is not zero")
    return padded[LENGTH_PREFIX:end]


def seal(header: Header, key: bytes, inner: bytes) -> bytes:
    """Pad and encrypt ``inner`` under ``key``, authenticating the header."""
    if len(header.nonce) != AEAD_NONCE_LEN:
        raise ValueError("nonce must be 12 bytes")
    associated = header.encode()
    return associated + aead_seal(key, header.nonce, pad(inner), associated)


def parse(data: bytes) -> Sealed:
    """Split an envelope into header and ciphertext without any key. Raises ProtocolError."""
    if len(data) > MAX_ENVELOPE:
        raise FrameTooLarge(f"an envelope of {len(data)} bytes exceeds {MAX_ENVELOPE}")
    if len(data) < HEADER_LEN:
        raise ProtocolError("the envelope is truncated (shorter than its header)")
    magic, version, kind_byte, line_id, direction, seq, nonce = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError("this is not a backchannel envelope")
    if version != VERSION:
        raise UnsupportedVersion(f"envelope version {version} is not supported")
    try:
        kind = Kind(kind_byte)
    except ValueError:
        raise ProtocolError(f"unknown envelope kind {kind_byte}") from None
    if direction not in (0, 1):
        raise ProtocolError(f"envelope direction {direction} is not 0 or 1")
    if seq < 1:
        raise ProtocolError("envelope sequence numbers start at 1")
    pos = HEADER_LEN
    hello_key = hello_kem = b""
    if kind is Kind.HELLO:
        if direction != 1 or len(data) < pos + HELLO_EXTRA_LEN:
            raise ProtocolError("the hello envelope is malformed or truncated")
        hello_key = data[pos : pos + 32]
        hello_kem = data[pos + 32 : pos + HELLO_EXTRA_LEN]
        pos += HELLO_EXTRA_LEN
    ciphertext = data[pos:]
    if len(ciphertext) - AEAD_TAG_LEN not in BUCKETS:
        raise ProtocolError("the envelope is truncated or its body has a wrong size")
    header = Header(kind, line_id, direction, seq, nonce, hello_key, hello_kem)
    return Sealed(header, data[:pos], ciphertext)


def open_sealed(sealed: Sealed, key: bytes) -> bytes:
    """Authenticate and decrypt; return the inner bytes. Raises DecryptError or ProtocolError."""
    padded = aead_open(key, sealed.header.nonce, sealed.ciphertext, sealed.associated)
    return unpad(padded)
