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

:func:`verify_export` checks an exported transcript with nothing but the two public keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from backchannel.errors import BadSignature, ProtocolError, RecordInvalid
from backchannel.proto.encoding import cbor_decode, cbor_encode, cbor_map, field, fixed_bytes
from backchannel.proto.payloads import Checkpoint, Payload, payload_from_map
from backchannel.proto.primitives import ed25519_verify, mldsa_verify, sha256
from backchannel.proto.transcript import Transcript, genesis, next_hash

ENTRY_CONTEXT = b"backchannel/v1 entry\x00"
CHECKPOINT_CONTEXT = b"backchannel/v1 checkpoint\x00"
SEAL_CONTEXT = b"backchannel/v1 export seal\x00"
EXPORT_FORMAT = "backchannel-transcript/1"
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


# ---- exported transcripts ---------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedExport:
    line_id: str
    on_record: bool
    counts: tuple[int, int]
    head: str
    checkpoints: int
    spent: tuple[str, ...] = ()  # entries the receiver could not read: in the chain, content unproven


def verify_export(
    doc: Any, keys: dict[str, dict[str, str]], require_signatures: bool = True
) -> VerifiedExport:
    """Verify an exported transcript with the two stations' public keys alone.

    ``keys`` maps "inviter" and "accepter" to {"ed25519": hex, "mldsa65": hex}. Raises
    ``RecordInvalid`` naming the first entry or checkpoint that does not verify. An export of
    a line off the record has no signatures: it fails unless ``require_signatures`` is False,
    in which case only the chain's own consistency is checked.
    """
    try:
        return _verify_export(doc, keys, require_signatures)
    except RecordInvalid:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ProtocolError) as exc:
        raise RecordInvalid(f"the export is malformed: {exc}") from None


def _verify_export(doc: Any, keys: dict[str, dict[str, str]], require_signatures: bool) -> VerifiedExport:
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise RecordInvalid(f"this is not a {EXPORT_FORMAT} export")
    line_id = bytes.fromhex(doc["line_id"])
    on_record = doc["on_record"] is True
    if not on_record and require_signatures:
        raise RecordInvalid(
            "this line is off the record: nothing in the export is signed, so it proves "
            "nothing to a third party (deniable by design)"
        )
    signer = {0: keys["inviter"], 1: keys["accepter"]}
    for role, direction in (("inviter", 0), ("accepter", 1)):
        exported = doc["stations"][role]
        if exported["ed25519"] != signer[direction]["ed25519"]:
            raise RecordInvalid(f"the {role}'s key in the export is not the key you gave")
    chains: dict[int, list[bytes]] = {0: [], 1: []}
    heads = [genesis(line_id, 0), genesis(line_id, 1)]
    spent: list[str] = []
    for index, item in enumerate(doc["entries"]):
        if not isinstance(item.get("direction"), int) or isinstance(item.get("direction"), bool):
            raise RecordInvalid(f"item {index + 1} has no valid direction")
        direction, seq = item["direction"], int(item["seq"])
        where = f"entry {seq} of direction {direction} (item {index + 1})"
        if direction not in (0, 1) or seq != len(chains[direction]) + 1:
            raise RecordInvalid(f"{where} is out of order or a gap precedes it")
        raw = bytes.fromhex(item["entry"])
        if item.get("spent") is True:
            # The receiving station could not read this frame (its place was spent so the line
            # went on). Its bytes are chained like any entry, but nothing about it is proven.
            spent.append(where)
            heads[direction] = next_hash(line_id, direction, seq, heads[direction], raw)
            if item.get("hash") and bytes.fromhex(item["hash"]) != heads[direction]:
                raise RecordInvalid(f"{where}: the chain hash does not match (altered)")
            chains[direction].append(heads[direction])
            continue
        try:
            key = bytes.fromhex(signer[direction]["ed25519"]) if on_record else None
            entry = decode_entry(raw, line_id, direction, seq, key)
        except BadSignature:
            raise RecordInvalid(f"{where}: the signature does not verify (altered or forged)") from None
        except ProtocolError as exc:
            raise RecordInvalid(f"{where} is malformed: {exc}") from None
        other = chains[1 - direction]
        if entry.seen.count > len(other):
            raise RecordInvalid(f"{where}: it claims to have seen entries that come later in the record")
        expected = other[entry.seen.count - 1] if entry.seen.count else genesis(line_id, 1 - direction)
        if entry.seen.head != expected:
            raise RecordInvalid(f"{where}: its view of the other direction does not match the record")
        if "payload" in item and item["payload"] != readable(entry.payload.to_cbor()):
            raise RecordInvalid(f"{where}: its readable copy does not match the signed entry (altered)")
        heads[direction] = next_hash(line_id, direction, seq, heads[direction], raw)
        if item.get("hash") and bytes.fromhex(item["hash"]) != heads[direction]:
            raise RecordInvalid(f"{where}: the chain hash does not match (altered)")
        chains[direction].append(heads[direction])
    for index, cp in enumerate(doc.get("checkpoints", [])):
        counts = (int(cp["counts"][0]), int(cp["counts"][1]))
        cp_heads = (bytes.fromhex(cp["heads"][0]), bytes.fromhex(cp["heads"][1]))
        by = int(cp["by"])
        where = f"checkpoint {index + 1} (by direction {by})"
        for d in (0, 1):
            if not 0 <= counts[d] <= len(chains[d]):
                raise RecordInvalid(f"{where} counts entries the record does not have")
            have = chains[d][counts[d] - 1] if counts[d] else genesis(line_id, d)
            if have != cp_heads[d]:
                raise RecordInvalid(f"{where} does not match the entries")
        if not on_record:
            continue
        message = checkpoint_message(line_id, counts, cp_heads)
        try:
            mldsa_verify(bytes.fromhex(signer[by]["mldsa65"]), bytes.fromhex(cp["mldsa65"]), message)
        except BadSignature:
            raise RecordInvalid(f"{where}: the ML-DSA-65 signature does not verify") from None
    counts = (len(chains[0]), len(chains[1]))
    head = Transcript(line_id, counts, (heads[0], heads[1])).head()
    if doc.get("head") and doc["head"] != head.hex():
        raise RecordInvalid("the export's final head does not match its entries")
    if on_record:
        # Everything the signatures above do not cover (times recorded, names, checkpoint
        # outcomes) is covered by the exporting station's seal: no byte can change unnoticed.
        seal = doc.get("seal")
        if not isinstance(seal, dict) or seal.get("by") not in ("inviter", "accepter"):
            raise RecordInvalid("the export has no seal from the station that made it")
        try:
            ed25519_verify(
                bytes.fromhex(keys[seal["by"]]["ed25519"]), bytes.fromhex(seal["ed25519"]), export_digest(doc)
            )
        except BadSignature:
            raise RecordInvalid(
                "the export was altered after it was made: the exporting station's seal does not verify "
                "(a recorded time, a name or a checkpoint outcome was changed)"
            ) from None
    return VerifiedExport(
        line_id.hex(), on_record, counts, head.hex(), len(doc.get("checkpoints", [])), tuple(spent)
    )


def readable(value: Any) -> Any:
    """The human-readable copy of a payload in an export: bytes as hex, capabilities' keys left out."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: readable(v) for k, v in value.items() if k != "send_key"}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


def export_digest(doc: dict[str, Any]) -> bytes:
    """What the exporter's seal covers: the whole export but the seal, as canonical JSON."""
    body = {k: v for k, v in doc.items() if k != "seal"}
    return SEAL_CONTEXT + sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def decode_export_entry(raw_hex: str) -> dict[str, Any]:
    """The payload of an exported entry, as plain data for reports (no verification)."""
    value = cbor_decode(bytes.fromhex(raw_hex), "entry")
    return value.get("p", {}) if isinstance(value, dict) else {}
