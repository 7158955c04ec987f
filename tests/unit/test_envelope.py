"""The envelope: the outer AEAD layer, its fixed header and its padding buckets."""

from __future__ import annotations

import struct

import pytest

from backchannel.errors import (
    DecryptError,
    FrameTooLarge,
    MessageTooLarge,
    ProtocolError,
    UnsupportedVersion,
)
from backchannel.proto import envelope
from backchannel.proto.envelope import (
    BUCKETS,
    HEADER_LEN,
    HELLO_EXTRA_LEN,
    LENGTH_PREFIX,
    MAX_ENVELOPE,
    MAX_INNER,
    Header,
    Kind,
)
from backchannel.proto.primitives import AEAD_TAG_LEN, MLKEM_CIPHERTEXT_LEN

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
LINE = bytes.fromhex("00112233445566778899aabbccddeeff")
NONCE = bytes(range(100, 112))
HELLO_KEY = bytes(range(200, 232))
HELLO_KEM = bytes(i % 251 for i in range(MLKEM_CIPHERTEXT_LEN))

# Byte offsets of the header fields (see the layout in envelope.py).
OFF_MAGIC, OFF_VERSION, OFF_KIND, OFF_LINE, OFF_DIR, OFF_SEQ, OFF_NONCE = 0, 2, 3, 4, 20, 21, 29


def data_header(direction: int = 0, seq: int = 7) -> Header:
    return Header(Kind.DATA, LINE, direction, seq, NONCE)


def hello_header() -> Header:
    return Header(Kind.HELLO, LINE, 1, 1, NONCE, HELLO_KEY, HELLO_KEM)


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def test_data_envelope_round_trips() -> None:
    frame = envelope.seal(data_header(), KEY, b"olm bytes")
    sealed = envelope.parse(frame)
    assert sealed.header == data_header()
    assert sealed.associated == frame[:HEADER_LEN]
    assert envelope.open_sealed(sealed, KEY) == b"olm bytes"


def test_hello_envelope_round_trips_with_its_clear_key_material() -> None:
    frame = envelope.seal(hello_header(), KEY, b"hello inner")
    sealed = envelope.parse(frame)
    assert sealed.header.hello_key == HELLO_KEY
    assert sealed.header.hello_kem == HELLO_KEM
    assert len(sealed.associated) == HEADER_LEN + HELLO_EXTRA_LEN
    assert envelope.open_sealed(sealed, KEY) == b"hello inner"


def test_empty_inner_round_trips() -> None:
    assert envelope.open_sealed(envelope.parse(envelope.seal(data_header(), KEY, b"")), KEY) == b""


@pytest.mark.parametrize("bucket", BUCKETS)
def test_every_padding_bucket_is_used_exactly_up_to_its_capacity(bucket: int) -> None:
    largest = b"x" * (bucket - LENGTH_PREFIX)
    frame = envelope.seal(data_header(), KEY, largest)
    assert len(frame) == HEADER_LEN + bucket + AEAD_TAG_LEN
    assert envelope.open_sealed(envelope.parse(frame), KEY) == largest
    if bucket != BUCKETS[-1]:
        next_bucket = BUCKETS[BUCKETS.index(bucket) + 1]
        frame = envelope.seal(data_header(), KEY, largest + b"y")
        assert len(frame) == HEADER_LEN + next_bucket + AEAD_TAG_LEN


def test_messages_of_different_lengths_in_one_bucket_have_the_same_size() -> None:
    sizes = {len(envelope.seal(data_header(), KEY, b"a" * n)) for n in (0, 1, 17, 200, 252)}
    assert sizes == {HEADER_LEN + BUCKETS[0] + AEAD_TAG_LEN}


def test_pad_then_unpad_is_identity_and_padding_is_zero() -> None:
    padded = envelope.pad(b"abc")
    assert len(padded) == BUCKETS[0]
    assert padded[:LENGTH_PREFIX] == struct.pack(">I", 3)
    assert not any(padded[LENGTH_PREFIX + 3 :])
    assert envelope.unpad(padded) == b"abc"


def test_unpad_rejects_a_body_that_is_not_a_bucket_size() -> None:
    with pytest.raises(ProtocolError):
        envelope.unpad(bytes(BUCKETS[0] - 1))


def test_unpad_rejects_nonzero_padding() -> None:
    padded = bytearray(envelope.pad(b"abc"))
    padded[-1] = 1
    with pytest.raises(ProtocolError):
        envelope.unpad(bytes(padded))


def test_unpad_rejects_a_length_beyond_the_body() -> None:
    padded = struct.pack(">I", BUCKETS[0]) + bytes(BUCKETS[0] - LENGTH_PREFIX)
    with pytest.raises(ProtocolError):
        envelope.unpad(padded)


def test_the_largest_inner_fits_and_one_more_byte_is_message_too_large() -> None:
    frame = envelope.seal(data_header(), KEY, bytes(MAX_INNER))
    assert len(frame) == HEADER_LEN + BUCKETS[-1] + AEAD_TAG_LEN
    with pytest.raises(MessageTooLarge):
        envelope.seal(data_header(), KEY, bytes(MAX_INNER + 1))


def test_sealing_with_a_short_nonce_is_refused() -> None:
    with pytest.raises(ValueError):
        envelope.seal(Header(Kind.DATA, LINE, 0, 1, NONCE[:11]), KEY, b"x")


@pytest.mark.parametrize(
    ("offset", "mask"),
    [
        pytest.param(OFF_LINE, 0x01, id="line-id-first-byte"),
        pytest.param(OFF_LINE + 15, 0x80, id="line-id-last-byte"),
        pytest.param(OFF_DIR, 0x01, id="direction"),
        pytest.param(OFF_SEQ + 7, 0x01, id="sequence-low-byte"),
        pytest.param(OFF_SEQ, 0x01, id="sequence-high-byte"),
        pytest.param(OFF_NONCE, 0x01, id="nonce-first-byte"),
        pytest.param(OFF_NONCE + 11, 0x40, id="nonce-last-byte"),
    ],
)
def test_tampering_with_a_data_header_field_is_a_decrypt_error(offset: int, mask: int) -> None:
    frame = envelope.seal(data_header(direction=0, seq=7), KEY, b"secret")
    tampered = envelope.parse(flip(frame, offset, mask))  # still well formed...
    with pytest.raises(DecryptError):
        envelope.open_sealed(tampered, KEY)  # ...but no longer authentic


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(HEADER_LEN, id="hello-x25519-key"),
        pytest.param(HEADER_LEN + 31, id="hello-x25519-key-last"),
        pytest.param(HEADER_LEN + 32, id="hello-mlkem-ciphertext"),
        pytest.param(HEADER_LEN + HELLO_EXTRA_LEN - 1, id="hello-mlkem-ciphertext-last"),
    ],
)
def test_tampering_with_the_hello_key_material_is_a_decrypt_error(offset: int) -> None:
    frame = envelope.seal(hello_header(), KEY, b"hello")
    with pytest.raises(DecryptError):
        envelope.open_sealed(envelope.parse(flip(frame, offset)), KEY)


def test_changing_the_kind_is_rejected() -> None:
    frame = envelope.seal(data_header(direction=1, seq=1), KEY, b"x")
    as_hello = frame[:OFF_KIND] + bytes([Kind.HELLO]) + frame[OFF_KIND + 1 :]
    with pytest.raises((ProtocolError, DecryptError)):
        envelope.open_sealed(envelope.parse(as_hello), KEY)


@pytest.mark.parametrize("where", ["first", "middle", "tag"])
def test_tampering_with_the_ciphertext_is_a_decrypt_error(where: str) -> None:
    frame = envelope.seal(data_header(), KEY, b"secret")
    index = {"first": HEADER_LEN, "middle": HEADER_LEN + 100, "tag": len(frame) - 1}[where]
    with pytest.raises(DecryptError):
        envelope.open_sealed(envelope.parse(flip(frame, index)), KEY)


def test_the_wrong_key_is_a_decrypt_error_that_does_not_say_why() -> None:
    frame = envelope.seal(data_header(), KEY, b"secret")
    with pytest.raises(DecryptError) as wrong_key:
        envelope.open_sealed(envelope.parse(frame), OTHER_KEY)
    with pytest.raises(DecryptError) as tampered:
        envelope.open_sealed(envelope.parse(flip(frame, HEADER_LEN)), KEY)
    assert str(wrong_key.value) == str(tampered.value)


@pytest.mark.parametrize("length", [0, 1, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 16, -1, -17])
def test_truncated_data_envelopes_are_protocol_errors(length: int) -> None:
    frame = envelope.seal(data_header(), KEY, b"secret")
    with pytest.raises(ProtocolError):
        envelope.parse(frame[:length])


@pytest.mark.parametrize("length", [HEADER_LEN + 10, HEADER_LEN + HELLO_EXTRA_LEN - 1, -1])
def test_truncated_hello_envelopes_are_protocol_errors(length: int) -> None:
    frame = envelope.seal(hello_header(), KEY, b"hello")
    with pytest.raises(ProtocolError):
        envelope.parse(frame[:length])


def test_an_envelope_with_extra_bytes_is_a_protocol_error() -> None:
    frame = envelope.seal(data_header(), KEY, b"secret")
    with pytest.raises(ProtocolError):
        envelope.parse(frame + b"\x00")


def test_an_envelope_beyond_the_maximum_is_frame_too_large() -> None:
    with pytest.raises(FrameTooLarge):
        envelope.parse(b"BC\x01\x02" + bytes(MAX_ENVELOPE))


def test_a_maximal_hello_is_within_the_maximum_envelope_size() -> None:
    frame = envelope.seal(hello_header(), KEY, bytes(MAX_INNER))
    assert len(frame) == MAX_ENVELOPE
    assert envelope.open_sealed(envelope.parse(frame), KEY) == bytes(MAX_INNER)


def test_wrong_magic_is_a_protocol_error() -> None:
    frame = envelope.seal(data_header(), KEY, b"x")
    with pytest.raises(ProtocolError):
        envelope.parse(b"XC" + frame[2:])


def test_another_version_is_unsupported_version() -> None:
    frame = envelope.seal(data_header(), KEY, b"x")
    with pytest.raises(UnsupportedVersion):
        envelope.parse(frame[:OFF_VERSION] + b"\x02" + frame[OFF_VERSION + 1 :])


@pytest.mark.parametrize("kind", [0, 3, 255])
def test_unknown_kinds_are_protocol_errors(kind: int) -> None:
    frame = envelope.seal(data_header(), KEY, b"x")
    with pytest.raises(ProtocolError, match="kind"):
        envelope.parse(frame[:OFF_KIND] + bytes([kind]) + frame[OFF_KIND + 1 :])


@pytest.mark.parametrize("direction", [2, 255])
def test_directions_other_than_0_and_1_are_protocol_errors(direction: int) -> None:
    frame = envelope.seal(data_header(), KEY, b"x")
    with pytest.raises(ProtocolError, match="direction"):
        envelope.parse(frame[:OFF_DIR] + bytes([direction]) + frame[OFF_DIR + 1 :])


def test_sequence_number_zero_is_a_protocol_error() -> None:
    frame = envelope.seal(data_header(seq=1), KEY, b"x")
    with pytest.raises(ProtocolError, match="sequence"):
        envelope.parse(frame[:OFF_SEQ] + bytes(8) + frame[OFF_SEQ + 8 :])


def test_a_hello_in_the_inviter_direction_is_a_protocol_error() -> None:
    frame = envelope.seal(hello_header(), KEY, b"hello")
    with pytest.raises(ProtocolError):
        envelope.parse(frame[:OFF_DIR] + b"\x00" + frame[OFF_DIR + 1 :])


def test_both_directions_of_data_are_accepted() -> None:
    for direction in (0, 1):
        sealed = envelope.parse(envelope.seal(data_header(direction=direction), KEY, b"x"))
        assert sealed.header.direction == direction


def test_the_largest_sequence_number_round_trips() -> None:
    frame = envelope.seal(data_header(seq=2**64 - 1), KEY, b"x")
    assert envelope.parse(frame).header.seq == 2**64 - 1
