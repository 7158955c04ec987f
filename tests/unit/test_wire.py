"""The circuit frame (proto/wire.py): sizes, keys, the synthetic nonce, split and round trips."""

from __future__ import annotations

import hashlib
import hmac
import math

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.errors import FrameTooLarge, InvalidArgument, MisaddressedFrame, ProtocolError
from backchannel.proto import envelope, wire
from backchannel.proto.envelope import Header, Kind
from backchannel.proto.wire import (
    CHUNK,
    FRAME_SIZE,
    HEADER,
    MAX_FRAGMENTS,
    NONCE,
    PLAINTEXT,
    TAG,
    CircuitKeys,
    Cover,
    Fragment,
)

LINE_KEY = bytes(range(32))
URL_A = "wss://relay-a.example:8443"
URL_B = "wss://relay-b.example:8443"
LINE = bytes.fromhex("00112233445566778899aabbccddeeff")
KEYS = wire.circuit_keys(LINE_KEY, URL_A)


def an_envelope(seq: int = 7, size: int = 100, direction: int = 0) -> bytes:
    return envelope.seal(Header(Kind.DATA, LINE, direction, seq, bytes(12)), bytes(32), b"m" * size)


def reference_keys(ikm: bytes, info: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"", info=info).derive(ikm)
    return okm[:32], okm[32:]


def reference_open(keys: CircuitKeys, frame: bytes) -> bytes:
    return ChaCha20Poly1305(keys.aead).decrypt(frame[:12], frame[12:], b"")


def test_the_sizes_add_up() -> None:
    assert (FRAME_SIZE, NONCE, TAG, PLAINTEXT, HEADER, CHUNK) == (4096, 12, 16, 4068, 13, 4055)
    assert NONCE + PLAINTEXT + TAG == FRAME_SIZE
    assert MAX_FRAGMENTS == math.ceil(envelope.MAX_ENVELOPE / CHUNK) == 9
    assert envelope.MAX_ENVELOPE <= wire.MAX_SPLIT


def test_circuit_and_hello_keys_follow_the_spec_derivation() -> None:
    aead, nonce = reference_keys(LINE_KEY, b"backchannel/v1 circuit\x00" + URL_A.encode())
    assert wire.circuit_keys(LINE_KEY, URL_A) == CircuitKeys(aead, nonce)
    aead, nonce = reference_keys(LINE_KEY, b"backchannel/v1 hello circuit\x00" + URL_A.encode())
    assert wire.hello_keys(LINE_KEY, URL_A) == CircuitKeys(aead, nonce)


def test_keys_differ_per_circuit_per_line_key_and_for_the_hello() -> None:
    keys = [
        wire.circuit_keys(LINE_KEY, URL_A),
        wire.circuit_keys(LINE_KEY, URL_B),
        wire.circuit_keys(bytes(32), URL_A),
        wire.hello_keys(LINE_KEY, URL_A),
    ]
    parts = [k.aead for k in keys] + [k.nonce for k in keys]
    assert len(set(parts)) == len(parts)


def test_keys_are_not_printed() -> None:
    assert LINE_KEY.hex() not in repr(KEYS) and KEYS.aead.hex() not in repr(KEYS)


def test_a_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        wire.circuit_keys(bytes(16), URL_A)


@pytest.mark.parametrize(
    ("size", "count"),
    [(1, 1), (CHUNK, 1), (CHUNK + 1, 2), (2 * CHUNK, 2), (envelope.MAX_ENVELOPE, 9), (wire.MAX_SPLIT, 9)],
)
def test_split_cuts_full_chunks_and_a_last_remainder(size: int, count: int) -> None:
    data = bytes(i % 251 for i in range(size))
    chunks = wire.split(data)
    assert len(chunks) == count
    assert all(len(c) == CHUNK for c in chunks[:-1]) and 1 <= len(chunks[-1]) <= CHUNK
    assert b"".join(chunks) == data


def test_split_refuses_nothing_and_too_much() -> None:
    with pytest.raises(ProtocolError):
        wire.split(b"")
    with pytest.raises(FrameTooLarge):
        wire.split(bytes(wire.MAX_SPLIT + 1))


@pytest.mark.parametrize(
    ("inner", "frames"), [(200, 1), (1_000, 1), (1_021, 2), (4_000, 2), (16_000, 5), (envelope.MAX_INNER, 9)]
)
def test_how_many_frames_each_envelope_padding_size_takes(inner: int, frames: int) -> None:
    """The envelope keeps its padding sizes (§7): 256 and 1 024 fit one frame, 4 096 takes two."""
    assert len(wire.seal_fragments(KEYS, 1, an_envelope(size=inner))) == frames


@pytest.mark.parametrize(("inner", "frames"), [(1_000, 1), (4_000, 2), (envelope.MAX_INNER, 9)])
def test_how_many_frames_a_hello_takes(inner: int, frames: int) -> None:
    hello = envelope.seal(
        Header(Kind.HELLO, LINE, 1, 1, bytes(12), bytes(32), bytes(1088)), bytes(32), bytes(inner)
    )
    assert len(wire.seal_fragments(KEYS, 1, hello)) == frames


def test_fragments_round_trip_in_order() -> None:
    data = bytes(i % 253 for i in range(10_000))  # wire does not parse what it carries
    frames = wire.seal_fragments(KEYS, 42, data)
    assert [len(f) for f in frames] == [FRAME_SIZE] * 3
    opened = [wire.open_frame(KEYS, f) for f in frames]
    assert all(isinstance(f, Fragment) for f in opened)
    fragments = [f for f in opened if isinstance(f, Fragment)]
    assert [(f.seq, f.index, f.count) for f in fragments] == [(42, 0, 3), (42, 1, 3), (42, 2, 3)]
    assert b"".join(f.chunk for f in fragments) == data


def test_sealing_is_deterministic_so_retries_are_the_same_bytes() -> None:
    data = an_envelope(size=9_000)
    assert wire.seal_fragments(KEYS, 7, data) == wire.seal_fragments(KEYS, 7, data)


def test_the_nonce_is_the_synthetic_nonce_of_the_plaintext() -> None:
    for frame in [*wire.seal_fragments(KEYS, 7, an_envelope()), wire.seal_cover(KEYS, bytes(16))]:
        plaintext = reference_open(KEYS, frame)
        assert len(plaintext) == PLAINTEXT
        assert frame[:12] == hmac.new(KEYS.nonce, plaintext, hashlib.sha256).digest()[:12]


def test_fragment_plaintext_layout() -> None:
    data = an_envelope(seq=7, size=10)
    (frame,) = wire.seal_fragments(KEYS, 7, data)
    plaintext = reference_open(KEYS, frame)
    assert plaintext[0] == 1
    assert int.from_bytes(plaintext[1:9], "big") == 7
    assert (plaintext[9], plaintext[10]) == (0, 1)
    assert int.from_bytes(plaintext[11:13], "big") == len(data)
    assert plaintext[13 : 13 + len(data)] == data
    assert not any(plaintext[13 + len(data) :])


def test_cover_round_trips_and_differs_with_its_random_bytes() -> None:
    one = wire.seal_cover(KEYS, bytes(16))
    two = wire.seal_cover(KEYS, bytes(15) + b"\x01")
    assert len(one) == len(two) == FRAME_SIZE and one != two
    assert wire.open_frame(KEYS, one) == Cover() == wire.open_frame(KEYS, two)
    plaintext = reference_open(KEYS, two)
    assert plaintext[0] == 0 and plaintext[1:17] == bytes(15) + b"\x01" and not any(plaintext[17:])


def test_cover_needs_exactly_sixteen_random_bytes() -> None:
    with pytest.raises(InvalidArgument):
        wire.seal_cover(KEYS, bytes(8))


@pytest.mark.parametrize("seq", [0, -1, 2**64])
def test_a_sequence_number_out_of_range_is_refused(seq: int) -> None:
    with pytest.raises(ProtocolError):
        wire.seal_fragments(KEYS, seq, an_envelope())


def test_check_envelope_accepts_its_own_line_direction_and_seq() -> None:
    sealed = wire.check_envelope(an_envelope(seq=3, direction=1), LINE, 1, 3)
    assert sealed.header.seq == 3


@pytest.mark.parametrize(("line_id", "direction", "seq"), [(bytes(16), 1, 3), (LINE, 0, 3), (LINE, 1, 4)])
def test_check_envelope_refuses_an_envelope_of_another_line_direction_or_seq(
    line_id: bytes, direction: int, seq: int
) -> None:
    with pytest.raises(MisaddressedFrame):
        wire.check_envelope(an_envelope(seq=3, direction=1), line_id, direction, seq)


def test_check_envelope_refuses_garbage() -> None:
    with pytest.raises(ProtocolError):
        wire.check_envelope(b"not an envelope at all, not even close to it............", LINE, 0, 1)
