"""The typed payloads inside Olm, and the canonical CBOR they are made of."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from backchannel.errors import ProtocolError, RemoteError, UnprintableName
from backchannel.proto.encoding import (
    b64u_decode,
    b64u_encode,
    cbor_decode,
    cbor_encode,
    cbor_map,
    field,
    fixed_bytes,
)
from backchannel.proto.invitation import MAX_RELAYS, MailboxCapability
from backchannel.proto.payloads import (
    HELLO_BINDING_CONTEXT,
    MAX_NAME,
    MAX_TEXT_BYTES,
    Acknowledged,
    Delivered,
    Hello,
    Message,
    Payload,
    Precedence,
    Welcome,
    decode_payload,
    encode_payload,
    hello_binding,
)

CAP = MailboxCapability("wss://relay.example", b"i" * 16, b"k" * 32)
SIG = b"s" * 64

EVERY_PAYLOAD: list[Payload] = [
    Hello("bravo", (CAP,), SIG),
    Hello("b" * MAX_NAME, (CAP,) * MAX_RELAYS, SIG),
    Welcome(),
    *(Message(p, "text", 1_700_000_000_000) for p in Precedence),
    Message(Precedence.ROUTINE, "", 0),
    Message(Precedence.FLASH, "é" * (MAX_TEXT_BYTES // 2), 2**63 - 1),
    Delivered(1, 2),
    Acknowledged(3, "duty officer", 4),
]


@pytest.mark.parametrize("payload", EVERY_PAYLOAD, ids=lambda p: type(p).__name__)
def test_every_payload_round_trips(payload: Payload) -> None:
    raw = encode_payload(payload)
    assert decode_payload(raw) == payload
    assert raw == cbor_encode(payload.to_cbor())


def test_payload_maps_carry_their_type_tag() -> None:
    tags = {type(p).__name__: cbor_decode(encode_payload(p))["t"] for p in EVERY_PAYLOAD}
    assert tags == {
        "Hello": "hello",
        "Welcome": "welcome",
        "Message": "msg",
        "Delivered": "delivered",
        "Acknowledged": "ack",
    }


def mutate(payload: Payload, **changes: Any) -> bytes:
    obj = payload.to_cbor() | changes
    return cbor_encode({k: v for k, v in obj.items() if v is not _DROP})


_DROP = object()
MSG = Message(Precedence.ROUTINE, "hi", 5)


@pytest.mark.parametrize(
    ("payload", "changes"),
    [
        pytest.param(MSG, {"extra": 1}, id="unknown-field"),
        pytest.param(Welcome(), {"x": None}, id="unknown-field-on-welcome"),
        pytest.param(MSG, {"t": "telegram"}, id="unknown-type"),
        pytest.param(MSG, {"t": 1}, id="type-not-text"),
        pytest.param(MSG, {"p": "URGENT"}, id="unknown-precedence"),
        pytest.param(MSG, {"p": "routine"}, id="lowercase-precedence"),
        pytest.param(MSG, {"text": b"bytes"}, id="text-as-bytes"),
        pytest.param(MSG, {"at": True}, id="bool-as-int"),
        pytest.param(MSG, {"at": -1}, id="negative-time"),
        pytest.param(MSG, {"at": 2**63}, id="time-out-of-range"),
        pytest.param(MSG, {"at": 1.5}, id="float-time"),
        pytest.param(MSG, {"text": "x" * (MAX_TEXT_BYTES + 1)}, id="text-too-long"),
        pytest.param(MSG, {"text": "é" * (MAX_TEXT_BYTES // 2 + 1)}, id="text-too-long-in-bytes"),
        pytest.param(MSG, {"text": _DROP}, id="missing-text"),
        pytest.param(Delivered(1, 2), {"upto": "1"}, id="upto-as-text"),
        pytest.param(Acknowledged(1, "op", 2), {"op": "o" * (MAX_NAME + 1)}, id="operator-too-long"),
        pytest.param(Hello("b", (CAP,), SIG), {"sig": b"s" * 63}, id="short-signature"),
        pytest.param(Hello("b", (CAP,), SIG), {"mailboxes": []}, id="no-mailboxes"),
        pytest.param(Hello("b", (CAP,), SIG), {"mailboxes": [CAP.to_cbor()] * 9}, id="nine-mailboxes"),
        pytest.param(Hello("b", (CAP,), SIG), {"name": "n" * (MAX_NAME + 1)}, id="name-too-long"),
        pytest.param(
            Hello("b", (CAP,), SIG), {"mailboxes": [CAP.to_cbor() | {"send_id": b"x"}]}, id="short-send-id"
        ),
    ],
)
def test_malformed_payloads_are_protocol_errors(payload: Payload, changes: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(mutate(payload, **changes))


@pytest.mark.parametrize(
    "mailbox",
    [CAP.to_cbor() | {"url": "http://relay.example"}, ["wss://relay.example", b"i" * 16, b"k" * 32]],
    ids=["not-a-relay-url", "not-a-map"],
)
def test_a_hello_with_a_bad_mailbox_is_a_protocol_error(mailbox: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(mutate(Hello("b", (CAP,), SIG), mailboxes=[mailbox]))


HOSTILE_NAMES = [
    "",
    "evil\x1b[2J",
    "\x1b]0;pwned\x07",
    "two\nlines",
    "tab\there",
    "c1\x9bcsi",
    "del\x7f",
    "\u202eoverride",
    "zero\u200bwidth",
    "line\u2028sep",
    "n" * (MAX_NAME + 1),
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hello_name_that_is_not_printable_and_bounded_is_refused_by_name(name: str) -> None:
    with pytest.raises(UnprintableName, match="'name'"):
        decode_payload(mutate(Hello("b", (CAP,), SIG), name=name))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_an_acknowledging_operator_name_that_is_not_printable_is_refused_by_name(name: str) -> None:
    with pytest.raises(UnprintableName, match="'op'"):
        decode_payload(mutate(Acknowledged(1, "op", 2), op=name))


@pytest.mark.parametrize("name", ["Ivan Petrovich", "Иван Петрович", "王小明", "o'brien [night]", "é" * 32])
def test_printable_names_in_any_script_are_accepted(name: str) -> None:
    assert decode_payload(encode_payload(Acknowledged(1, name, 2))) == Acknowledged(1, name, 2)
    hello = decode_payload(encode_payload(Hello(name, (CAP,), SIG)))
    assert isinstance(hello, Hello) and hello.name == name


def test_an_unprintable_name_is_a_protocol_error_so_the_line_spends_the_entry() -> None:
    """The receiver treats ProtocolError from an authenticated entry as unreadable (PROTOCOL §9)."""
    assert issubclass(UnprintableName, ProtocolError)
    assert issubclass(UnprintableName, RemoteError)


@pytest.mark.parametrize("url", ["wss://relay.example/\x1b[2J", "wss://relay\u202e.example"])
def test_a_relay_url_from_the_peer_must_be_printable(url: str) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(mutate(Hello("b", (CAP,), SIG), mailboxes=[CAP.to_cbor() | {"url": url}]))


def test_a_hello_with_a_bad_mailbox_is_at_least_a_remote_error() -> None:
    bad = CAP.to_cbor() | {"url": "http://relay.example"}
    with pytest.raises(RemoteError):
        decode_payload(mutate(Hello("b", (CAP,), SIG), mailboxes=[bad]))


def test_a_non_canonical_payload_is_refused() -> None:
    raw = cbor2.dumps({"text": "hi", "t": "msg", "p": "ROUTINE", "at": 5}, canonical=False)
    assert cbor2.loads(raw) == MSG.to_cbor()
    with pytest.raises(ProtocolError, match="canonical"):
        decode_payload(raw)


@pytest.mark.parametrize("raw", [b"", b"\x80", b"\x01", cbor_encode(["t", "msg"]), cbor_encode({1: "msg"})])
def test_payloads_that_are_not_text_keyed_maps_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(raw)


def test_the_hello_binding_is_context_line_identity_digest() -> None:
    assert (
        hello_binding(b"L" * 16, b"I" * 32, b"D" * 32)
        == HELLO_BINDING_CONTEXT + b"L" * 16 + b"I" * 32 + b"D" * 32
    )


# ---- the CBOR layer underneath -----------------------------------------------------------


def test_canonical_encoding_sorts_map_keys_and_is_stable() -> None:
    assert cbor_encode({"b": 1, "a": 2}) == cbor_encode({"a": 2, "b": 1})
    assert cbor_decode(cbor_encode({"b": 1, "a": 2})) == {"a": 2, "b": 1}


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(ProtocolError):
        cbor_decode(cbor_encode({"a": 1}) + b"\x00")


def test_an_unknown_tag_is_refused() -> None:
    with pytest.raises(ProtocolError):
        cbor_decode(cbor2.dumps(cbor2.CBORTag(1000, "x")))


def test_non_shortest_integers_are_refused() -> None:
    with pytest.raises(ProtocolError, match="canonical"):
        cbor_decode(b"\x18\x01")  # 1 encoded in two bytes


def test_garbage_is_a_protocol_error_naming_what_was_parsed() -> None:
    with pytest.raises(ProtocolError, match="the widget is not valid CBOR"):
        cbor_decode(b"\xff\xff", "widget")


def test_a_mime_tagged_value_is_a_protocol_error_not_a_crash() -> None:
    with pytest.raises(ProtocolError):
        cbor_decode(bytes.fromhex("d824626869"))  # tag 36, "hi"


@pytest.mark.parametrize(
    "value",
    [
        cbor2.CBORTag(2, b"\x01" + bytes(16)),  # bignum, canonical for 2**128
        cbor2.CBORTag(4, [-1, 5]),  # decimal fraction
        cbor2.CBORTag(258, [1, 2]),  # set
        cbor2.CBORTag(37, b"u" * 16),  # UUID
        cbor2.CBORTag(0, "2020-01-01T00:00:00Z"),  # datetime
        1.5,  # floats have no place in the protocol
    ],
    ids=["bignum", "decimal", "set", "uuid", "datetime", "float"],
)
def test_built_in_semantic_tags_and_floats_are_refused(value: object) -> None:
    with pytest.raises(ProtocolError):
        cbor_decode(cbor2.dumps(value))


def test_cbor_map_refuses_non_maps_and_non_text_keys() -> None:
    assert cbor_map(cbor_encode({"a": 1})) == {"a": 1}
    for value in ([1], "x", {1: 2}, {b"a": 1}):
        with pytest.raises(ProtocolError, match="not a map"):
            cbor_map(cbor_encode(value))


def test_field_checks_presence_and_type_and_refuses_bool_as_int() -> None:
    obj = {"n": 1, "b": True, "s": "x"}
    assert field(obj, "n", int) == 1
    with pytest.raises(ProtocolError, match="lacks"):
        field(obj, "missing", int)
    with pytest.raises(ProtocolError, match="wrong type"):
        field(obj, "b", int)
    with pytest.raises(ProtocolError, match="wrong type"):
        field(obj, "s", bytes)


def test_fixed_bytes_checks_the_size() -> None:
    assert fixed_bytes({"k": b"12"}, "k", 2) == b"12"
    with pytest.raises(ProtocolError, match="2 bytes"):
        fixed_bytes({"k": b"123"}, "k", 2)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff" * 7, bytes(range(256))])
def test_base64url_round_trips_without_padding(data: bytes) -> None:
    text = b64u_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64u_decode(text) == data
    assert b64u_decode(" \n".join(text[i : i + 7] for i in range(0, len(text), 7))) == data


def test_base64url_of_impossible_length_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        b64u_decode("A")
