"""What travels inside Olm: the typed payloads of a line.

Each payload is a canonical CBOR map with a type tag ``t``. Receipts are payloads too,
with their own sequence numbers, so they are ordered, deduplicated and recorded in the
transcript exactly like messages.

- ``hello``: the accepter's first frame; its name, its mailboxes, and an Ed25519 signature
  binding its signing key to its Olm identity key and to this line.
- ``welcome``: the inviter's first frame; tells the accepter the line is established.
- ``msg``: an operator's message with its precedence.
- ``delivered``: a cumulative receipt: "every frame of yours up to ``upto`` is stored here".
- ``ack``: an operator has read message ``seq``; names the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from backchannel.errors import ProtocolError, UnprintableName
from backchannel.proto.encoding import cbor_encode, cbor_map, field, fixed_bytes
from backchannel.proto.invitation import MAX_NAME_BYTES, MAX_RELAYS, MailboxCapability, valid_name
from backchannel.proto.primitives import MLDSA_PUBLIC_LEN, MLDSA_SIGNATURE_LEN

HELLO_BINDING_CONTEXT = b"backchannel/v1 hello binding\x00"
MAX_TEXT_BYTES = 30_000
MAX_NAME = MAX_NAME_BYTES


class Precedence(StrEnum):
    FLASH = "FLASH"
    IMMEDIATE = "IMMEDIATE"
    PRIORITY = "PRIORITY"
    ROUTINE = "ROUTINE"


@dataclass(frozen=True)
class Hello:
    name: str
    mailboxes: tuple[MailboxCapability, ...]
    binding_signature: bytes
    pq_key: bytes = b""  # the accepter's ML-DSA-65 public key, on the record only

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": "hello",
            "name": self.name,
            "mailboxes": [m.to_cbor() for m in self.mailboxes],
            "sig": self.binding_signature,
        }
        if self.pq_key:
            out["pq"] = self.pq_key
        return out


@dataclass(frozen=True)
class Welcome:
    def to_cbor(self) -> dict[str, Any]:
        return {"t": "welcome"}


@dataclass(frozen=True)
class Message:
    precedence: Precedence
    text: str
    sent_at: int  # ms since epoch, the sender's clock

    def to_cbor(self) -> dict[str, Any]:
        return {"t": "msg", "p": self.precedence.value, "text": self.text, "at": self.sent_at}


@dataclass(frozen=True)
class Delivered:
    upto: int
    at: int

    def to_cbor(self) -> dict[str, Any]:
        return {"t": "delivered", "upto": self.upto, "at": self.at}


@dataclass(frozen=True)
class Acknowledged:
    seq: int
    operator: str
    at: int

    def to_cbor(self) -> dict[str, Any]:
        return {"t": "ack", "seq": self.seq, "op": self.operator, "at": self.at}


@dataclass(frozen=True)
class LinkTest:
    """A periodic test of the line, sent like every frame on every circuit."""

    test_id: int
    at: int

    def to_cbor(self) -> dict[str, Any]:
        return {"t": "test", "id": self.test_id, "at": self.at}


@dataclass(frozen=True)
class LinkTestReply:
    """The answer to a link test: which circuits (relay URLs) delivered a copy of it here.

    ``held`` is how long (ms) the answer was deliberately held back to let copies arrive on
    slower circuits; the tester subtracts it to get the circuits' round trip times.
    """

    test_id: int
    circuits: tuple[str, ...]
    at: int
    held: int = 0

    def to_cbor(self) -> dict[str, Any]:
        return {
            "t": "test-reply",
            "id": self.test_id,
            "circuits": list(self.circuits),
            "at": self.at,
            "held": self.held,
        }


@dataclass(frozen=True)
class Circuits:
    """Add circuits to a line (the sender's mailboxes on new relays) or remove them, by URL.

    Authenticated like every payload (Olm inside the line's envelope); applied by both sides.
    """

    add: tuple[MailboxCapability, ...]
    remove: tuple[str, ...]

    def to_cbor(self) -> dict[str, Any]:
        return {"t": "circuits", "add": [m.to_cbor() for m in self.add], "remove": list(self.remove)}


@dataclass(frozen=True)
class Checkpoint:
    """The sender's two chain heads, with recent entry hashes to name a divergence.

    ``recent[d]`` is the last up to 128 entry hashes of direction ``d`` (8 bytes each) ending
    at ``counts[d]``. ``pq_signature`` is ML-DSA-65 over both heads, on the record only.
    """

    counts: tuple[int, int]
    heads: tuple[bytes, bytes]
    recent: tuple[bytes, bytes]
    pq_signature: bytes = b""

    def to_cbor(self) -> dict[str, Any]:
        return {
            "t": "checkpoint",
            "n": list(self.counts),
            "h": list(self.heads),
            "r": list(self.recent),
            "pq": self.pq_signature,
        }


Payload = (
    Hello | Welcome | Message | Delivered | Acknowledged | LinkTest | LinkTestReply | Circuits | Checkpoint
)


def hello_binding(line_id: bytes, identity_key: bytes, invitation_digest: bytes) -> bytes:
    """What the accepter signs with its Ed25519 key to bind it to its Curve25519 identity."""
    return HELLO_BINDING_CONTEXT + line_id + identity_key + invitation_digest


def encode_payload(payload: Payload) -> bytes:
    return cbor_encode(payload.to_cbor())


def decode_payload(data: bytes) -> Payload:
    """Parse a payload from a peer; anything unexpected is a ``ProtocolError``."""
    return payload_from_map(cbor_map(data, "payload"))


def payload_from_map(obj: dict[str, Any]) -> Payload:
    """Build a payload from an already decoded (canonical, plain) CBOR map."""
    kind = field(obj, "t", str)
    payload: Payload
    if kind == "hello":
        raw = field(obj, "mailboxes", list)
        if not 1 <= len(raw) <= MAX_RELAYS:
            raise ProtocolError("a hello must carry between 1 and 8 mailboxes")
        payload = Hello(
            name=_name(obj, "name"),
            mailboxes=tuple(MailboxCapability.from_cbor(m) for m in raw),
            binding_signature=fixed_bytes(obj, "sig", 64),
            pq_key=fixed_bytes(obj, "pq", MLDSA_PUBLIC_LEN) if "pq" in obj else b"",
        )
    elif kind == "checkpoint":
        counts, heads, recent = field(obj, "n", list), field(obj, "h", list), field(obj, "r", list)
        if (
            len(counts) != 2
            or len(heads) != 2
            or len(recent) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in counts)
            or not all(isinstance(h, bytes) and len(h) == 32 for h in heads)
            or not all(isinstance(r, bytes) and len(r) % 8 == 0 and len(r) <= 128 * 8 for r in recent)
        ):
            raise ProtocolError("the checkpoint is malformed")
        if any(len(recent[d]) // 8 > counts[d] for d in (0, 1)):
            raise ProtocolError("the checkpoint carries more recent hashes than entries")
        pq: bytes = field(obj, "pq", bytes)
        if len(pq) not in (0, MLDSA_SIGNATURE_LEN):
            raise ProtocolError("the checkpoint's ML-DSA-65 signature has the wrong size")
        payload = Checkpoint((counts[0], counts[1]), (heads[0], heads[1]), (recent[0], recent[1]), pq)
    elif kind == "welcome":
        payload = Welcome()
    elif kind == "msg":
        try:
            precedence = Precedence(field(obj, "p", str))
        except ValueError:
            raise ProtocolError("unknown precedence") from None
        payload = Message(precedence, _bounded_text(obj, "text", MAX_TEXT_BYTES), _ms(obj, "at"))
    elif kind == "delivered":
        payload = Delivered(_ms(obj, "upto"), _ms(obj, "at"))
    elif kind == "ack":
        payload = Acknowledged(_ms(obj, "seq"), _name(obj, "op"), _ms(obj, "at"))
    elif kind == "test":
        payload = LinkTest(_ms(obj, "id"), _ms(obj, "at"))
    elif kind == "test-reply":
        payload = LinkTestReply(_ms(obj, "id"), _urls(obj, "circuits"), _ms(obj, "at"), _ms(obj, "held"))
    elif kind == "circuits":
        raw_add = field(obj, "add", list)
        if len(raw_add) > MAX_RELAYS:
            raise ProtocolError("a circuits change may add at most 8 mailboxes")
        payload = Circuits(tuple(MailboxCapability.from_cbor(m) for m in raw_add), _urls(obj, "remove"))
    else:
        raise ProtocolError(f"unknown payload type {kind[:20]!r}")
    if payload.to_cbor() != obj:
        raise ProtocolError("the payload carries unknown fields")
    return payload


def _urls(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    values = field(obj, key, list)
    if len(values) > MAX_RELAYS or not all(
        isinstance(v, str) and 0 < len(v) <= 512 and v.isprintable() for v in values
    ):
        raise ProtocolError(f"the field {key!r} must list at most 8 relay URLs")
    return tuple(values)


def _name(obj: dict[str, Any], key: str) -> str:
    """A name from the peer: shown to operators, used as a line name and in alarm commands.

    Anything but 1 to 64 bytes of printable text (no control characters, escape sequences,
    bidi overrides or line breaks) is refused outright rather than cleaned up: see PROTOCOL §9.
    """
    value: str = field(obj, key, str)
    if not valid_name(value):
        raise UnprintableName(
            f"the field {key!r} is not a name: it must be 1 to {MAX_NAME} bytes of printable text"
        )
    return value


def _bounded_text(obj: dict[str, Any], key: str, limit: int) -> str:
    value: str = field(obj, key, str)
    if len(value.encode("utf-8")) > limit:
        raise ProtocolError(f"the field {key!r} is too long")
    return value


def _ms(obj: dict[str, Any], key: str) -> int:
    value: int = field(obj, key, int)
    if not 0 <= value < 2**63:
        raise ProtocolError(f"the field {key!r} is out of range")
    return value
