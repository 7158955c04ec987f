"""Attacks on the circuit frame at the unit level: what a relay (or anyone on the path) can try.

A relay can flip bits, move a frame from one circuit or line to another, cut or extend it; a
sender with the key could also emit a non-canonical frame (padding, nonce, fields). Each must
end in a named error, and none of the envelope's clear header may be readable in the frame.
"""

from __future__ import annotations

import random
import struct

import pytest

from backchannel.errors import DecryptError, FrameTooLarge, ProtocolError
from backchannel.proto import envelope, wire
from backchannel.proto.envelope import Header, Kind
from backchannel.proto.primitives import aead_seal, hmac_sha256
from backchannel.proto.wire import CHUNK, FRAME_SIZE, PLAINTEXT, CircuitKeys

from support.figures import figure

LINE_KEY = bytes(range(32))
OTHER_LINE_KEY = bytes(range(32, 64))
URL_A = "wss://relay-a.example:8443"
URL_B = "wss://relay-b.example:8443"
LINE = bytes.fromhex("00112233445566778899aabbccddeeff")
KEYS = wire.circuit_keys(LINE_KEY, URL_A)
SEQ = 0x0102030405060708
RNG = random.Random(11)  # seeded: every frame below is the same on every run


def an_envelope(seq: int = SEQ, size: int = 3_000) -> bytes:
    return envelope.seal(Header(Kind.DATA, LINE, 0, seq, bytes(range(12))), bytes(32), RNG.randbytes(size))


def seal_plaintext(keys: CircuitKeys, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    """A frame the way a sender holding the key would make it, with any plaintext and nonce."""
    nonce = hmac_sha256(keys.nonce, plaintext)[:12] if nonce is None else nonce
    return nonce + aead_seal(keys.aead, nonce, plaintext, b"")


def fragment_plaintext(
    seq: int = 1, index: int = 0, count: int = 1, length: int = 10, kind: int = 1
) -> bytes:
    head = struct.pack(">BQBBH", kind, seq, index, count, length)
    body = head + b"c" * min(length, CHUNK)
    return body + bytes(PLAINTEXT - len(body))


def test_the_plaintexts_built_here_are_accepted_unaltered() -> None:
    """The control for the tests below: only the one alteration makes each frame fail."""
    assert isinstance(wire.open_frame(KEYS, seal_plaintext(KEYS, fragment_plaintext())), wire.Fragment)


@pytest.mark.parametrize("offset", [0, 11, 12, 13, 100, FRAME_SIZE - 17, FRAME_SIZE - 16, FRAME_SIZE - 1])
def test_a_flipped_bit_anywhere_is_a_decrypt_error_that_says_nothing(offset: int) -> None:
    frame = bytearray(wire.seal_fragments(KEYS, 5, an_envelope())[0])
    frame[offset] ^= 0x40
    with pytest.raises(DecryptError) as caught:
        wire.open_frame(KEYS, bytes(frame))
    assert str(caught.value) == "A frame could not be authenticated or decrypted; it was dropped."


@pytest.mark.parametrize(
    "keys",
    [
        wire.circuit_keys(LINE_KEY, URL_B),  # the same line's other circuit
        wire.circuit_keys(OTHER_LINE_KEY, URL_A),  # another line (or the other direction) on this relay
        wire.hello_keys(LINE_KEY, URL_A),  # the hello keys of this circuit
    ],
    ids=["other-circuit", "other-line-or-direction", "hello-keys"],
)
def test_a_frame_moved_from_another_circuit_line_or_direction_does_not_open(keys: CircuitKeys) -> None:
    for frame in [*wire.seal_fragments(keys, 5, an_envelope()), wire.seal_cover(keys, bytes(16))]:
        with pytest.raises(DecryptError):
            wire.open_frame(KEYS, frame)


def test_a_fragment_spliced_from_two_circuits_does_not_open() -> None:
    """Nonce of one circuit's copy, ciphertext of the other's: no mix-and-match."""
    mine = wire.seal_fragments(KEYS, 5, an_envelope())[0]
    theirs = wire.seal_fragments(wire.circuit_keys(LINE_KEY, URL_B), 5, an_envelope())[0]
    for spliced in (theirs[:12] + mine[12:], mine[:12] + theirs[12:]):
        with pytest.raises(DecryptError):
            wire.open_frame(KEYS, spliced)


@pytest.mark.parametrize("size", [0, 12, 28, FRAME_SIZE - 1])
def test_a_short_frame_is_a_protocol_error(size: int) -> None:
    frame = wire.seal_cover(KEYS, bytes(16))[:size]
    with pytest.raises(ProtocolError):
        wire.open_frame(KEYS, frame)


@pytest.mark.parametrize("extra", [1, 16, 4096])
def test_a_long_frame_is_frame_too_large(extra: int) -> None:
    with pytest.raises(FrameTooLarge):
        wire.open_frame(KEYS, wire.seal_cover(KEYS, bytes(16)) + bytes(extra))


def test_a_plaintext_of_the_wrong_length_is_refused() -> None:
    """Only a frame of exactly 4 096 bytes is read; a shorter sealed plaintext cannot pass."""
    short = seal_plaintext(KEYS, fragment_plaintext()[:-1])
    assert len(short) == FRAME_SIZE - 1
    with pytest.raises(ProtocolError):
        wire.open_frame(KEYS, short)


def test_non_zero_padding_of_a_fragment_is_refused() -> None:
    plaintext = bytearray(fragment_plaintext(length=10))
    plaintext[-1] = 1
    with pytest.raises(ProtocolError, match="padding"):
        wire.open_frame(KEYS, seal_plaintext(KEYS, bytes(plaintext)))


def test_non_zero_padding_of_a_cover_frame_is_refused() -> None:
    plaintext = bytearray(PLAINTEXT)
    plaintext[17] = 1
    with pytest.raises(ProtocolError, match="padding"):
        wire.open_frame(KEYS, seal_plaintext(KEYS, bytes(plaintext)))


def test_a_nonce_that_is_not_the_synthetic_nonce_is_refused() -> None:
    """The AEAD would accept any nonce; the frame has one canonical encoding only."""
    plaintext = fragment_plaintext()
    frame = seal_plaintext(KEYS, plaintext, nonce=bytes(12))
    with pytest.raises(ProtocolError, match="nonce"):
        wire.open_frame(KEYS, frame)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"kind": 2}, "kind"),
        ({"kind": 255}, "kind"),
        ({"seq": 0}, "sequence"),
        ({"count": 0}, "range"),
        ({"count": 10, "index": 0}, "range"),
        ({"count": 2, "index": 2}, "range"),
        ({"length": 0}, "length"),
        ({"length": CHUNK + 1}, "length"),
        ({"count": 2, "index": 0, "length": CHUNK - 1}, "length"),
    ],
)
def test_fragment_fields_out_of_range_are_refused(fields: dict[str, int], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        wire.open_frame(KEYS, seal_plaintext(KEYS, fragment_plaintext(**fields)))


def test_the_last_fragment_may_be_short_and_the_others_full() -> None:
    full = wire.open_frame(KEYS, seal_plaintext(KEYS, fragment_plaintext(count=2, index=0, length=CHUNK)))
    last = wire.open_frame(KEYS, seal_plaintext(KEYS, fragment_plaintext(count=2, index=1, length=1)))
    assert isinstance(full, wire.Fragment) and isinstance(last, wire.Fragment)
    assert (len(full.chunk), len(last.chunk)) == (CHUNK, 1)


def substrings(data: bytes, width: int) -> set[bytes]:
    return {data[i : i + width] for i in range(len(data) - width + 1)}


def test_nothing_of_the_envelope_header_is_readable_in_its_frames() -> None:
    """No line id, no 8-byte sequence number, no magic+version, no 16 bytes of the envelope."""
    data = an_envelope(size=12_000)
    frames = wire.seal_fragments(KEYS, SEQ, data)
    seq_bytes = SEQ.to_bytes(8, "big")
    envelope_strings = substrings(data, 16)
    for frame in frames:
        assert len(frame) == FRAME_SIZE
        assert LINE not in frame and seq_bytes not in frame and data[:4] not in frame
        assert not substrings(frame, 16) & envelope_strings


def test_two_circuits_share_no_sixteen_byte_string_for_the_same_entry() -> None:
    data = an_envelope(size=12_000)
    on_a = b"|".join(wire.seal_fragments(KEYS, SEQ, data))
    on_b = b"|".join(wire.seal_fragments(wire.circuit_keys(LINE_KEY, URL_B), SEQ, data))
    shared = substrings(on_a, 16) & substrings(on_b, 16)
    figure("16-byte strings common to two circuits' frames of one entry", len(shared), "strings")
    assert not shared


def test_a_cover_frame_and_a_receipt_look_alike_to_the_relay() -> None:
    """Same size; no byte that repeats at a fixed place across frames of the circuit."""
    frames = [wire.seal_cover(KEYS, RNG.randbytes(16)) for _ in range(8)]
    frames += [wire.seal_fragments(KEYS, seq, an_envelope(seq=seq, size=100))[0] for seq in range(1, 9)]
    assert {len(f) for f in frames} == {FRAME_SIZE}
    # Every 4-byte window differs across the 16 frames: no constant field, no counter in clear.
    for offset in range(0, FRAME_SIZE - 4, 4):
        assert len({f[offset : offset + 4] for f in frames}) == len(frames)
