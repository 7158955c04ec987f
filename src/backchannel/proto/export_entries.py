"""The arbiter's step 9, entry by entry: each item of an export's ``entries`` checked against
the chain built so far (docs/PROTOCOL.md §11.5).

:func:`backchannel.proto.export.verify_export` runs the whole procedure; this module holds
its longest step, which walks the entries in the exporter's order and keeps the two chains
(:class:`ChainState`): the item's shape, its sender's signature, its readable copy, what its
``seen`` and its payload (receipt, acknowledgement, checkpoint, hello, welcome) claim about
the chain, and the chain hash. A withheld body is accepted only as a digest, to be covered
later by a checkpoint its sender signed. Each refusal is a ``RecordInvalid`` whose ``reason``
names the step (:func:`fail`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

from backchannel.errors import BadSignature, ProtocolError, RecordInvalid
from backchannel.proto.encoding import json_as_cbor
from backchannel.proto.identity import StationKeys
from backchannel.proto.payloads import Acknowledged, Checkpoint, Delivered, Hello, Welcome
from backchannel.proto.primitives import mldsa_verify, sha256
from backchannel.proto.record import Entry, Seen, checkpoint_message, decode_entry, short_hashes
from backchannel.proto.transcript import genesis, next_hash_of_digest

ROLES = ("inviter", "accepter")  # the signer of direction 0, of direction 1
SHOWN_FIELDS = frozenset({"direction", "seq", "entry", "hash", "recorded_at", "payload"})
WITHHELD_FIELDS = frozenset({"direction", "seq", "withheld", "digest", "hash", "recorded_at"})


@dataclass
class ChainState:
    line_id: bytes
    on_record: bool
    own: bool
    keys: dict[int, StationKeys]
    chains: dict[int, list[bytes]] = field(default_factory=lambda: {0: [], 1: []})
    kinds: dict[int, list[str | None]] = field(default_factory=lambda: {0: [], 1: []})
    covered: list[int] = field(default_factory=lambda: [0, 0])
    checkpoints: list[str] = field(default_factory=list)
    withheld: list[tuple[int, int, str]] = field(default_factory=list)
    contradicted: list[str] = field(default_factory=list)

    def head_at(self, direction: int, count: int) -> bytes:
        return self.chains[direction][count - 1] if count else genesis(self.line_id, direction)


def fail(reason: str, message: str) -> NoReturn:
    raise RecordInvalid(message, reason)


def readable(value: Any) -> Any:
    """The human-readable copy of a payload in an export: bytes as hex, capabilities' keys left out."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: readable(v) for k, v in value.items() if k != "send_key"}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


def check_entry(state: ChainState, index: int, item: Any) -> None:
    """Step 9, for one item of ``entries``: its shape whole (9.1–9.3), then what it says."""
    if not isinstance(item, dict):
        fail("malformed", f"item {index + 1} of the entries is not an object")
    direction, seq = item.get("direction"), item.get("seq")
    if direction not in (0, 1) or not is_int(direction) or not is_int(seq):
        fail("malformed", f"item {index + 1} has no valid direction and sequence number")
    assert isinstance(direction, int) and isinstance(seq, int)
    where = f"entry {seq} of direction {direction} (item {index + 1})"
    if seq != len(state.chains[direction]) + 1:
        fail("order", f"{where} is out of order or a gap precedes it")
    withheld = item.get("withheld") is True
    if withheld and ("payload" in item or "entry" in item):
        fail(
            "withheld-text",
            f"{where} is marked withheld but carries its entry or a readable copy: a withheld body "
            "never comes with text",
        )
    fields = WITHHELD_FIELDS if withheld else SHOWN_FIELDS
    if set(item) != fields or not is_int(item["recorded_at"]):
        fail(
            "malformed",
            f"{where} is malformed: it must have exactly {sorted(fields)}, recorded_at an integer",
        )
    try:
        chain_hash = hex_bytes(item["hash"], 32, "hash")
        raw = hex_bytes(item["digest"], 32, "digest") if withheld else hex_bytes(item["entry"], None, "entry")
    except ValueError as exc:
        fail("malformed", f"{where} is malformed: {exc}")
    if withheld:
        if seq == 1:
            fail(
                "withheld-opening", f"{where}: the {'hello' if direction else 'welcome'} may not be withheld"
            )
        digest = raw
        state.kinds[direction].append(None)
        state.withheld.append((direction, seq, where))
    else:
        signer = state.keys[direction]
        try:
            entry = decode_entry(
                raw, state.line_id, direction, seq, signer.ed25519 if state.on_record else None
            )
        except BadSignature:
            fail(
                "signature",
                f"{where}: the signature does not verify under the {ROLES[direction]}'s key "
                f"({signer.name!r}): altered, forged, or signed by another station",
            )
        except ProtocolError as exc:
            fail("malformed-entry", f"{where} is malformed: {exc}")
        if not same_json(item["payload"], readable(entry.payload.to_cbor())):
            fail("readable-copy", f"{where}: its readable copy does not match the signed entry (altered)")
        check_seen(state, direction, entry, where)
        check_payload(state, direction, seq, entry, where)
        digest = sha256(raw)
    head = next_hash_of_digest(state.line_id, direction, seq, state.head_at(direction, seq - 1), digest)
    if chain_hash != head:
        fail("chain-hash", f"{where}: the chain hash does not match (altered)")
    state.chains[direction].append(head)


def check_seen(state: ChainState, direction: int, entry: Entry, where: str) -> None:
    other = 1 - direction
    if entry.seen.count > len(state.chains[other]):
        fail("seen", f"{where}: it claims to have seen entries that come later in the record")
    if entry.seen.head != state.head_at(other, entry.seen.count):
        fail("seen", f"{where}: its view of the other direction does not match the record")


def check_payload(state: ChainState, direction: int, seq: int, entry: Entry, where: str) -> None:
    """What each kind of payload claims about the chain, checked against the chain."""
    payload, seen = entry.payload, entry.seen
    opening = "hello" if direction == 1 else "welcome"
    kind = payload.to_cbor()["t"]
    if seq == 1 and kind != opening:
        fail("opening", f"{where} is not the {opening}: entry 1 of direction {direction} must be")
    if seq != 1 and kind in ("hello", "welcome"):
        fail("opening", f"{where} is a {kind}, which only opens a direction")
    if isinstance(payload, Hello) and state.on_record and payload.pq_key != state.keys[1].mldsa65:
        fail(
            "hello-record-key",
            f"{where}: the accepter's record key in its signed hello is not the accepter's ML-DSA-65 key",
        )
    if isinstance(payload, Welcome) and seen.count < 1:
        fail("opening", f"{where}: the welcome was sealed before the hello was received")
    if isinstance(payload, Delivered) and payload.upto > seen.count:
        fail(
            "receipt",
            f"{where}: it says entries up to {payload.upto} of direction {1 - direction} were delivered, "
            f"but its sender had received only {seen.count}",
        )
    if isinstance(payload, Acknowledged):
        target = payload.seq
        if not 1 <= target <= seen.count or state.kinds[1 - direction][target - 1] not in ("msg", None):
            fail(
                "ack",
                f"{where}: it acknowledges entry {target} of direction {1 - direction}, which is not a "
                "message its sender had received",
            )
    if isinstance(payload, Checkpoint):
        check_checkpoint(state, direction, seq, payload, seen, where)
    state.kinds[direction].append(kind)


def check_checkpoint(
    state: ChainState, direction: int, seq: int, cp: Checkpoint, seen: Seen, where: str
) -> None:
    """A checkpoint describes both chains just before its entry (PROTOCOL §11.3): its own
    direction up to N − 1 and the other exactly as its ``seen`` (already checked against the
    chain), with the recent hashes of both. Tying ``n[1−D]`` to ``seen`` rather than to the
    items before it keeps the verdict independent of how the exporter interleaved the two
    directions, and keeps the post-quantum signature from claiming more (or less) received
    than the Ed25519-signed ``seen`` says."""
    other = 1 - direction
    agrees = (
        cp.counts[direction] == seq - 1
        and cp.heads[direction] == state.head_at(direction, seq - 1)
        and cp.counts[other] == seen.count
        and cp.heads[other] == seen.head
        and all(cp.recent[d] == short_hashes(state.chains[d][: cp.counts[d]]) for d in (0, 1))
    )
    if not agrees:
        if state.own:
            state.contradicted.append(where)
            return
        fail("checkpoint-chain", f"{where} is a checkpoint that contradicts the chain before it")
    if state.on_record:
        try:
            mldsa_verify(
                state.keys[direction].mldsa65,
                cp.pq_signature,
                checkpoint_message(state.line_id, cp.counts, cp.heads),
            )
        except BadSignature:
            if state.own:
                state.contradicted.append(where)
                return
            fail(
                "checkpoint-signature",
                f"{where}: the checkpoint's ML-DSA-65 signature does not verify under the "
                f"{ROLES[direction]}'s record key",
            )
        state.covered[direction] = max(state.covered[direction], cp.counts[direction])
    state.checkpoints.append(where.split(" (item")[0])


def hex_bytes(value: Any, size: int | None, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a hex string")
    data = bytes.fromhex(value)
    if data.hex() != value or (size is not None and len(data) != size):
        raise ValueError(
            f"{what} must be {size} bytes in lowercase hex" if size else f"{what} is not lowercase hex"
        )
    return data


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, types included: Python's ``==`` takes ``true`` for ``1``, and a
    verifier in another language would not."""
    return json_as_cbor(a, "export") == json_as_cbor(b, "export")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
