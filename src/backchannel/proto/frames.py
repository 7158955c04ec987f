"""The relay wire codec: what a station and a relay say to each other.

Theory of operation
-------------------
Each WebSocket binary message is one *relay frame*::

    version (1) = 1 | type (1) | request id (4, big-endian) | body

The client picks the request id; the relay echoes it in the reply, so replies can be matched
while many requests are in flight. Frames the relay pushes on its own (``Welcome``,
``Deliver``) carry request id 0.

A mailbox is a one-way queue with two capabilities. Its creator holds the *receive* key and
gives the *send* key to the other station. The relay knows each mailbox by two unrelated
random ids (one for receiving, one for sending) and the two Ed25519 public keys; it never
learns who holds them. To use a mailbox on a connection, a client signs
``AUTH_CONTEXT | session nonce | frame type | mailbox id`` with the right key; the nonce is
fresh per connection, so a captured authorisation is worthless elsewhere.

This module is pure (no I/O) and is the only part of ``backchannel.proto`` the relay imports.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from backchannel.errors import FrameTooLarge, ProtocolError, UnsupportedVersion

VERSION = 1
HEADER = struct.Struct(">BBI")
ID_LEN = 16
KEY_LEN = 32
SIG_LEN = 64
NONCE_LEN = 32
#: The largest envelope a relay accepts by default (the largest padding bucket plus headers).
MAX_PAYLOAD = 34 * 1024
AUTH_CONTEXT = b"backchannel/v1 relay auth\x00"


class FrameType(IntEnum):
    CREATE = 0x01
    SUBSCRIBE = 0x02
    AUTH_SEND = 0x03
    SEND = 0x04
    ACK = 0x05
    PING = 0x06
    #: Delete a mailbox this connection SUBSCRIBEd, with every frame in it (rotation, §3.4).
    DELETE = 0x07
    WELCOME = 0x80
    OK = 0x81
    CREATED = 0x82
    STORED = 0x83
    DELIVER = 0x84
    ERROR = 0x8F


class RelayErrorCode(IntEnum):
    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    AUTH = 3
    NOT_AUTHORISED = 4
    TOO_LARGE = 5
    MAILBOX_FULL = 6
    QUOTA = 7
    INTERNAL = 8
    #: CREATE on a connection that did not present the relay's access token.
    TOKEN_REQUIRED = 9
    #: The client's address sent requests faster than the relay's rate limit.
    RATE_LIMITED = 10
    #: Sent instead of WELCOME: the relay holds its maximum of connections (overall or from
    #: this address); the connection is then closed.
    TOO_MANY_CONNECTIONS = 11
    #: A per-client limit (mailboxes created, subscriptions) of this connection or address.
    CLIENT_LIMIT = 12


@dataclass(frozen=True)
class Create:
    request_id: int
    recv_key: bytes
    send_key: bytes


@dataclass(frozen=True)
class Subscribe:
    request_id: int
    recv_id: bytes
    signature: bytes


@dataclass(frozen=True)
class AuthSend:
    request_id: int
    send_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Send:
    request_id: int
    send_id: bytes
    payload: bytes


@dataclass(frozen=True)
class Ack:
    request_id: int
    recv_id: bytes
    msg_id: bytes


@dataclass(frozen=True)
class Ping:
    request_id: int


@dataclass(frozen=True)
class Delete:
    request_id: int
    recv_id: bytes


@dataclass(frozen=True)
class Welcome:
    nonce: bytes
    request_id: int = 0


@dataclass(frozen=True)
class Ok:
    request_id: int


@dataclass(frozen=True)
class Created:
    request_id: int
    recv_id: bytes
    send_id: bytes


@dataclass(frozen=True)
class Stored:
    request_id: int
    msg_id: bytes


@dataclass(frozen=True)
class Deliver:
    recv_id: bytes
    msg_id: bytes
    payload: bytes
    request_id: int = 0


@dataclass(frozen=True)
class Error:
    request_id: int
    code: int
    message: str


Frame = (
    Create
    | Subscribe
    | AuthSend
    | Send
    | Ack
    | Ping
    | Delete
    | Welcome
    | Ok
    | Created
    | Stored
    | Deliver
    | Error
)


def auth_message(nonce: bytes, frame_type: FrameType, mailbox_id: bytes) -> bytes:
    """The bytes a client signs to use a mailbox on one connection."""
    return AUTH_CONTEXT + nonce + bytes([frame_type]) + mailbox_id


def encode(frame: Frame) -> bytes:
    """Serialise a frame to the bytes of one WebSocket message."""
    match frame:
        case Create(rid, rk, sk):
            return _head(FrameType.CREATE, rid) + _exact(rk, KEY_LEN) + _exact(sk, KEY_LEN)
        case Subscribe(rid, mid, sig):
            return _head(FrameType.SUBSCRIBE, rid) + _exact(mid, ID_LEN) + _exact(sig, SIG_LEN)
        case AuthSend(rid, mid, sig):
            return _head(FrameType.AUTH_SEND, rid) + _exact(mid, ID_LEN) + _exact(sig, SIG_LEN)
        case Send(rid, mid, payload):
            return _head(FrameType.SEND, rid) + _exact(mid, ID_LEN) + payload
        case Ack(rid, mid, msg):
            return _head(FrameType.ACK, rid) + _exact(mid, ID_LEN) + _exact(msg, ID_LEN)
        case Ping(rid):
            return _head(FrameType.PING, rid)
        case Delete(rid, mid):
            return _head(FrameType.DELETE, rid) + _exact(mid, ID_LEN)
        case Welcome(nonce, rid):
            return _head(FrameType.WELCOME, rid) + _exact(nonce, NONCE_LEN)
        case Ok(rid):
            return _head(FrameType.OK, rid)
        case Created(rid, rcv, snd):
            return _head(FrameType.CREATED, rid) + _exact(rcv, ID_LEN) + _exact(snd, ID_LEN)
        case Stored(rid, msg):
            return _head(FrameType.STORED, rid) + _exact(msg, ID_LEN)
        case Deliver(mid, msg, payload, rid):
            return _head(FrameType.DELIVER, rid) + _exact(mid, ID_LEN) + _exact(msg, ID_LEN) + payload
        case Error(rid, code, message):
            return _head(FrameType.ERROR, rid) + struct.pack(">H", code) + message.encode("utf-8")
    raise TypeError(f"not a relay frame: {frame!r}")  # pragma: no cover


def decode(data: bytes, max_payload: int = MAX_PAYLOAD) -> Frame:
    """Parse one relay frame. Anything malformed raises a ``ProtocolError`` subclass."""
    if len(data) < HEADER.size:
        raise ProtocolError("relay frame is truncated (shorter than its header)")
    version, type_byte, rid = HEADER.unpack_from(data)
    if version != VERSION:
        raise UnsupportedVersion(f"relay frame version {version} is not supported")
    if len(data) > HEADER.size + 2 * ID_LEN + max_payload:
        raise FrameTooLarge(f"relay frame of {len(data)} bytes exceeds the limit")
    try:
        ftype = FrameType(type_byte)
    except ValueError:
        raise ProtocolError(f"unknown relay frame type 0x{type_byte:02x}") from None
    body = data[HEADER.size :]
    match ftype:
        case FrameType.CREATE:
            a, b = _split(body, KEY_LEN, KEY_LEN)
            return Create(rid, a, b)
        case FrameType.SUBSCRIBE:
            a, b = _split(body, ID_LEN, SIG_LEN)
            return Subscribe(rid, a, b)
        case FrameType.AUTH_SEND:
            a, b = _split(body, ID_LEN, SIG_LEN)
            return AuthSend(rid, a, b)
        case FrameType.SEND:
            mid, payload = _prefix(body, ID_LEN)
            if len(payload) > max_payload:
                raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds {max_payload}")
            return Send(rid, mid, payload)
        case FrameType.ACK:
            a, b = _split(body, ID_LEN, ID_LEN)
            return Ack(rid, a, b)
        case FrameType.PING:
            _split(body)
            return Ping(rid)
        case FrameType.DELETE:
            (mid,) = _split(body, ID_LEN)
            return Delete(rid, mid)
        case FrameType.WELCOME:
            (nonce,) = _split(body, NONCE_LEN)
            return Welcome(nonce, rid)
        case FrameType.OK:
            _split(body)
            return Ok(rid)
        case FrameType.CREATED:
            a, b = _split(body, ID_LEN, ID_LEN)
            return Created(rid, a, b)
        case FrameType.STORED:
            (msg,) = _split(body, ID_LEN)
            return Stored(rid, msg)
        case FrameType.DELIVER:
            mid, rest = _prefix(body, ID_LEN)
            msg, payload = _prefix(rest, ID_LEN)
            return Deliver(mid, msg, payload, rid)
        case FrameType.ERROR:
            code_bytes, text = _prefix(body, 2)
            try:
                message = text.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("relay error text is not UTF-8") from None
            return Error(rid, struct.unpack(">H", code_bytes)[0], message)
    raise ProtocolError(f"unknown relay frame type 0x{type_byte:02x}")  # pragma: no cover


def _head(ftype: FrameType, rid: int) -> bytes:
    return HEADER.pack(VERSION, ftype, rid)


def _exact(value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise ValueError(f"field must be {size} bytes, got {len(value)}")
    return value


def _split(body: bytes, *sizes: int) -> tuple[bytes, ...]:
    if len(body) != sum(sizes):
        raise ProtocolError(f"relay frame body has {len(body)} bytes, expected {sum(sizes)}")
    out, pos = [], 0
    for size in sizes:
        out.append(body[pos : pos + size])
        pos += size
    return tuple(out)


def _prefix(body: bytes, size: int) -> tuple[bytes, bytes]:
    if len(body) < size:
        raise ProtocolError("relay frame is truncated")
    return body[:size], body[size:]
