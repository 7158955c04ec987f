"""The record: transcript entries, their signatures, checkpoints, and exported transcripts.

Theory of operation
-------------------
Every payload travels inside an *entry*: the canonical CBOR map ::

    {"p": payload, "seen": [n, head], "sig": signature}      ("sig" only on the record)

``seen`` is the sender's view of the *other* direction's chain when it sealed the entry
(its length and head), so every entry commits to what its sender had received: a dropped,
altered or injected entry in one direction shows up in the next entry of the other. The
entry bytes are what the transcript chain hashes (:mod:`backchannel.proto.transcript`).

On a line *on the record*, ``sig`` is the sender's Ed25519 identity signature over
``ENTRY_CONTEXT | line id | direction | seq | canonical {"p", "seen"}``: anyone holding the
two stations' public keys can check who said what, in which position. Checkpoints carry, in
addition, an ML-DSA-65 signature over both chain heads, and since a head commits to every
entry before it, the whole record stays provable after Ed25519 falls to a quantum computer.
Off the record, nothing is signed: Olm's authentication convinces the peer but no one else
(deniability), and an export says so.

:mod:`backchannel.proto.export` checks an exported record with nothing but the two stations'
identity files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backchannel.errors import BadSignature, ProtocolError
from backchannel.proto.encoding import cbor_encode, cbor_map, field, fixed_bytes
from backchannel.proto.payloads import Checkpoint, Payload, payload_from_map
from backchannel.proto.primitives import ed25519_verify
from backchannel.proto.transcript import genesis

ENTRY_CONTEXT = b"backchannel/v1 entry\x00"
CHECKPOINT_CONTEXT = b"backchannel/v1 checkpoint\x00"
RECENT = 128  # entry hashes per direction carried in a checkpoint, to name a divergence
SHORT = 8  # bytes of each such entry hash


@dataclass(frozen=True)
class Seen:
    """The sender's view of the other direction: how many entries, and the head after them."""

    count: int
    head: bytes


@dataclass(frozen=True)
class Entry:
    payload: Payload
    seen: Seen
    signature: bytes  # b"" off the record


def entry_message(line_id: bytes, direction: int, seq: int, body: bytes) -> bytes:
    return ENTRY_CONTEXT + line_id + bytes([direction]) + seq.to_bytes(8, "big") + body


def _body(payload: Payload, seen: Seen) -> dict[str, Any]:
    return {"p": payload.to_cbor(), "seen": [seen.count, seen.head]}


def encode_entry(
    payload: Payload, seen: Seen, line_id: bytes, direction: int, seq: int, sign: Any | None
) -> bytes:
    """The entry bytes; ``sign`` (Ed25519 over bytes) is given on the record, None off it."""
    body = _body(payload, seen)
    if sign is not None:
        body["sig"] = sign(entry_message(line_id, direction, seq, cbor_encode(body)))
    return cbor_encode(body)


def decode_entry(data: bytes, line_id: bytes, direction: int, seq: int, verify_key: bytes | None) -> Entry:
    """Parse an entry; on the record (``verify_key`` given) its signature must verify.

    Raises ``ProtocolError`` for a malformed entry and ``BadSignature`` for a bad signature.
    """
    obj = cbor_map(data, "entry")
    if set(obj) - {"p", "seen", "sig"}:
        raise ProtocolError("the entry carries unknown fields")
    raw_seen = field(obj, "seen", list, "entry")
    if (
        len(raw_seen) != 2
        or not isinstance(raw_seen[0], int)
        or isinstance(raw_seen[0], bool)
        or not 0 <= raw_seen[0] < 2**63
        or not isinstance(raw_seen[1], bytes)
        or len(raw_seen[1]) != 32
    ):
        raise ProtocolError("the entry's 'seen' field is malformed")
    seen = Seen(raw_seen[0], raw_seen[1])
    payload_map = field(obj, "p", dict, "entry")
    if not all(isinstance(k, str) for k in payload_map):
        raise ProtocolError("the entry's payload is not a map with text keys")
    payload = payload_from_map(payload_map)
    signature = b""
    if verify_key is not None:
        if "sig" not in obj:
            raise BadSignature("an entry on a line on the record is not signed")
        signature = fixed_bytes(obj, "sig", 64, "entry")
        body = cbor_encode(_body(payload, seen))
        ed25519_verify(verify_key, signature, entry_message(line_id, direction, seq, body))
    elif "sig" in obj:
        raise ProtocolError("an entry on a line off the record must not be signed")
    return Entry(payload, seen, signature)


# ---- checkpoints -----------------------------------------------------------------------------


def checkpoint_message(line_id: bytes, counts: tuple[int, int], heads: tuple[bytes, bytes]) -> bytes:
    return (
        CHECKPOINT_CONTEXT
        + line_id
        + counts[0].to_bytes(8, "big")
        + heads[0]
        + counts[1].to_bytes(8, "big")
        + heads[1]
    )


def short_hashes(hashes: list[bytes]) -> bytes:
    return b"".join(h[:SHORT] for h in hashes[-RECENT:])


@dataclass(frozen=True)
class Comparison:
    """What a peer's checkpoint says about our two records of the line."""

    status: str  # "agreed" or "diverged"; an agreement may note that the peer is behind
    direction: int | None = None  # where the first difference or the gap is
    seq: int | None = None
    detail: str = ""


def compare_checkpoint(
    checkpoint: Checkpoint,
    local: dict[int, list[bytes]],
    our_direction: int,
    line_id: bytes | None = None,
) -> Comparison:
    """Compare a peer's checkpoint with our chains (``local[d][i]`` = hash after entry i+1).

    A difference is named by its first entry (within the recent hashes the checkpoint
    carries); entries the peer has not received yet from us make it "behind".
    """
    for direction in (0, 1):
        count = checkpoint.counts[direction]
        ours = local[direction]
        if count > len(ours):
            return Comparison(
                "diverged",
                direction,
                len(ours) + 1,
                f"the peer records {count} entries in direction {direction}, we have "
                f"{len(ours)}: entries were injected",
            )
        our_head = ours[count - 1] if count else (genesis(line_id, direction) if line_id else None)
        if our_head is not None and our_head != checkpoint.heads[direction]:
            first = _first_difference(checkpoint.recent[direction], ours[:count])
            return Comparison(
                "diverged",
                direction,
                first,
                f"the two records differ from entry {first} of direction {direction} on "
                "(altered, dropped, injected or reordered)",
            )
    behind = len(local[our_direction]) - checkpoint.counts[our_direction]
    if behind > 0:
        seq = checkpoint.counts[our_direction] + 1
        return Comparison(
            "agreed",
            our_direction,
            seq,
            f"the peer had not yet received our entries from {seq} on ({behind} entries)",
        )
    return Comparison("agreed")


def _first_difference(recent: bytes, ours: list[bytes]) -> int:
    theirs = [recent[i : i + SHORT] for i in range(0, len(recent), SHORT)][-len(ours) :] if ours else []
    start = len(ours) - len(theirs)
    for offset, short in enumerate(theirs):
        if ours[start + offset][:SHORT] != short:
            return start + offset + 1
    return max(1, start)  # before the window the checkpoint carries
