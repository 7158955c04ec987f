"""The relay wire codec: every frame round-trips; every kind of damage has its error."""

from __future__ import annotations

import pytest

from backchannel.errors import FrameTooLarge, ProtocolError, RemoteError, UnsupportedVersion
from backchannel.proto import frames
from backchannel.proto.frames import FrameType

ID_A, ID_B = b"A" * 16, b"B" * 16
KEY_A, KEY_B = b"k" * 32, b"K" * 32
SIG = b"s" * 64

EVERY_FRAME: list[frames.Frame] = [
    frames.Create(1, KEY_A, KEY_B),
    frames.Subscribe(2, ID_A, SIG),
    frames.AuthSend(3, ID_B, SIG),
    frames.Send(4, ID_B, b"payload"),
    frames.Send(5, ID_B, b""),
    frames.Send(6, ID_B, b"x" * frames.MAX_PAYLOAD),
    frames.Ack(2**32 - 1, ID_A, ID_B),
    frames.Ping(8),
    frames.Delete(12, b"d" * 16),
    frames.Welcome(b"n" * 32),
    frames.Ok(9),
    frames.Created(10, ID_A, ID_B),
    frames.Stored(11, ID_B),
    frames.Deliver(ID_A, ID_B, b"ciphertext"),
    frames.Error(12, frames.RelayErrorCode.MAILBOX_FULL, "mailbox is full ✉"),
]


@pytest.mark.parametrize("frame", EVERY_FRAME, ids=lambda f: type(f).__name__)
def test_every_frame_round_trips(frame: frames.Frame) -> None:
    data = frames.encode(frame)
    assert data[0] == frames.VERSION
    assert frames.decode(data) == frame


def test_every_frame_type_is_covered() -> None:
    covered = {frames.decode(frames.encode(f)).__class__.__name__.upper() for f in EVERY_FRAME}
    names = {t.name.replace("_", "") for t in FrameType}
    assert names == {c.replace("_", "") for c in covered}


def test_request_id_is_big_endian_after_version_and_type() -> None:
    assert frames.encode(frames.Ping(0x01020304)) == bytes([1, FrameType.PING, 1, 2, 3, 4])


@pytest.mark.parametrize("frame", EVERY_FRAME, ids=lambda f: type(f).__name__)
def test_every_truncation_is_a_protocol_error(frame: frames.Frame) -> None:
    data = frames.encode(frame)
    for cut in range(len(data) - 1, -1, -1 if len(data) < 200 else -97):
        prefix = data[:cut]
        try:
            decoded = frames.decode(prefix)
        except ProtocolError:
            continue
        # Frames with a variable tail (SEND, DELIVER, ERROR) may legitimately get shorter.
        assert isinstance(decoded, frames.Send | frames.Deliver | frames.Error)


def test_trailing_bytes_on_fixed_frames_are_malformed() -> None:
    with pytest.raises(ProtocolError):
        frames.decode(frames.encode(frames.Ping(1)) + b"\0")
    with pytest.raises(ProtocolError):
        frames.decode(frames.encode(frames.Subscribe(1, ID_A, SIG)) + b"\0")


def test_unknown_version() -> None:
    data = bytearray(frames.encode(frames.Ping(1)))
    data[0] = 2
    with pytest.raises(UnsupportedVersion):
        frames.decode(bytes(data))


def test_unknown_type() -> None:
    with pytest.raises(ProtocolError) as caught:
        frames.decode(bytes([1, 0x42, 0, 0, 0, 1]))
    assert not isinstance(caught.value, UnsupportedVersion | FrameTooLarge)
    assert "0x42" in str(caught.value)


def test_oversized_send_and_frame() -> None:
    with pytest.raises(FrameTooLarge):
        frames.decode(frames.encode(frames.Send(1, ID_A, b"x" * (frames.MAX_PAYLOAD + 1))))
    with pytest.raises(FrameTooLarge):
        frames.decode(frames.encode(frames.Send(1, ID_A, b"x" * 101)), max_payload=100)
    huge = frames.encode(frames.Deliver(ID_A, ID_B, b"x" * (frames.MAX_PAYLOAD + 1)))
    with pytest.raises(FrameTooLarge):
        frames.decode(huge)


def test_error_text_must_be_utf8() -> None:
    data = frames.encode(frames.Error(1, 1, "")) + b"\xff\xfe"
    with pytest.raises(ProtocolError):
        frames.decode(data)


def test_garbage_raises_only_remote_errors() -> None:
    for data in (b"", b"\x01", b"\x01\x04\x00", bytes(range(256)), b"\x01\x8f\0\0\0\0\0"):
        with pytest.raises(RemoteError):
            frames.decode(data)


def test_encode_refuses_wrong_field_lengths() -> None:
    with pytest.raises(ValueError):
        frames.encode(frames.Subscribe(1, b"short", SIG))


def test_auth_message_binds_nonce_type_and_mailbox() -> None:
    base = frames.auth_message(b"n" * 32, FrameType.SUBSCRIBE, ID_A)
    assert base.startswith(frames.AUTH_CONTEXT)
    assert base != frames.auth_message(b"m" * 32, FrameType.SUBSCRIBE, ID_A)
    assert base != frames.auth_message(b"n" * 32, FrameType.AUTH_SEND, ID_A)
    assert base != frames.auth_message(b"n" * 32, FrameType.SUBSCRIBE, ID_B)
