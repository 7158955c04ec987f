"""An arbiter's verifier of `backchannel-transcript/2` exports, written from docs/PROTOCOL.md alone.

Why it exists: the record is meant to convince an arbiter who never saw the project's code, so the
spec text must suffice to check an export. This module is that check made concrete: it was written
from PROTOCOL §2 (notation, CBOR), §9 (payloads), §11 (entries, chain, checkpoints, export, the
arbiter's procedure) and §12 (fingerprints) without reading `src/backchannel/`, and it uses only
third-party primitives (`cryptography`, `cbor2`, `json`). test_spec_verifier.py runs it on the corpus
`docs/vectors/record-tamper/`; any disagreement is a bug of the spec text (or of the project).

`verify(export_bytes, key_file_bytes_list)` returns `(verdict, first_error_reason)`: `("verified",
None)` or `("refused", reason)`, the reason being the stable code §11.5 names for the step that failed.

The same holds for what a relay stores: the circuit frame of §7.1. `circuit_keys`, `unwrap_frame` and
`reassemble` at the end of this module were written from §7.1 (and §2, §4 for the notation and the
URL) without reading `backchannel.proto.wire`; test_spec_verifier.py runs them on
`docs/vectors/wire.json`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ROLES = ("inviter", "accepter")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 32

CTX_GENESIS = b"backchannel/v1 transcript genesis\0"
CTX_ENTRY_CHAIN = b"backchannel/v1 transcript entry\0"
CTX_HEAD = b"backchannel/v1 transcript head\0"
CTX_ENTRY_SIG = b"backchannel/v1 entry\0"
CTX_CHECKPOINT = b"backchannel/v1 checkpoint\0"
CTX_IDENTITY = b"backchannel/v1 identity file\0"
CTX_SEAL = b"backchannel/v2 export seal\0"

EXPORT_FIELDS = {
    "format",
    "line_id",
    "line",
    "on_record",
    "exported_by",
    "exported_at",
    "stations",
    "counts",
    "head",
    "entries",
}
STATION_FIELDS = {"name", "identity_key", "ed25519", "mldsa65", "fingerprint"}
KEY_FILE_FIELDS = {"format", "name", "identity_key", "ed25519", "mldsa65", "fingerprint", "signature"}
SHOWN_FIELDS = {"direction", "seq", "entry", "hash", "recorded_at", "payload"}
WITHHELD_FIELDS = {"direction", "seq", "withheld", "digest", "hash", "recorded_at"}


class Refused(Exception):
    """The first failed step of §11.5: `reason` is its stable code."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class _Protocol(Exception):
    """§11.1's ProtocolError (an entry or payload that does not decode)."""


class _BadSig(Exception):
    """§11.1's BadSignature."""


# ---------------------------------------------------------------- JSON, canonical form (§2, §11.4)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the name {k!r} is given twice")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    """Deepest level of any value; the top-level value is at level 0 (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(v, dict):
            stack.extend((x, level + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, level + 1) for x in v)
    return deepest


def parse_strict_json(data: bytes) -> Any:
    """Step 0: strict RFC 8259 JSON in UTF-8, no BOM, no name twice, no NaN/Infinity, depth ≤ 32."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if text.startswith("\ufeff"):
        raise ValueError("a byte order mark")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _depth(value) > MAX_DEPTH:
        raise ValueError("nested too deeply")
    return value


def _representable(value: Any) -> bool:
    """Only integers within int64, strings of Unicode scalar values, bools, null, arrays, objects."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int):
            if not INT64_MIN <= v <= INT64_MAX:
                return False
        elif isinstance(v, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                return False
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        else:
            return False
    return True


def canonical(value: Any) -> bytes:
    """C(x): the JSON document as deterministic CBOR (RFC 8949 §4.2.1, as cbor2 canonical=True)."""
    return bytes(cbor2.dumps(value, canonical=True))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _hex(v: Any, size: int | None) -> bytes | None:
    """Lowercase hex of `size` bytes (any whole number of bytes if None), else None."""
    if not isinstance(v, str) or len(v) % 2 or any(c not in "0123456789abcdef" for c in v):
        return None
    b = bytes.fromhex(v)
    return b if size is None or len(b) == size else None


# ---------------------------------------------------------------- fingerprint (§12)


@lru_cache(maxsize=64)
def fingerprint(ik: bytes, ed: bytes, rk: bytes) -> str:
    data = b"\x00\x02" + ik + ed + rk
    digest = data
    for _ in range(5200):
        digest = hashlib.sha512(digest + data).digest()
    return "".join(f"{int.from_bytes(digest[5 * j : 5 * j + 5], 'big') % 100000:05d}" for j in range(6))


def _ed_verify(key: bytes, sig: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _mldsa_verify(key: bytes, sig: bytes, message: bytes) -> bool:
    try:
        mldsa.MLDSA65PublicKey.from_public_bytes(key).verify(sig, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- entries and payloads (§11.1, §9)


def _strict_cbor(data: bytes) -> Any:
    """Decode, re-encode canonically, demand identical bytes; only plain CBOR types (no tags)."""
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several kinds on bad input
        raise _Protocol(f"not CBOR: {exc}") from None
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif not (isinstance(v, int | str | bytes) or v is None):
            raise _Protocol(f"a CBOR item of type {type(v).__name__}")
    try:
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:
        raise _Protocol(f"not re-encodable: {exc}") from None
    if again != data:
        raise _Protocol("not canonical CBOR")
    return value


def _seq(v: Any) -> bool:
    return _is_int(v) and 0 <= v <= INT64_MAX


def _name(v: Any) -> bool:
    return isinstance(v, str) and 1 <= len(v.encode()) <= 64 and v.isprintable()


def _url(v: Any) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= 512 and v.isprintable()


def _mailbox(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and set(v) == {"url", "send_id", "send_key"}
        and _url(v["url"])
        and v["url"].startswith(("ws://", "wss://"))
        and isinstance(v["send_id"], bytes)
        and len(v["send_id"]) == 16
        and isinstance(v["send_key"], bytes)
        and len(v["send_key"]) == 32
    )


def _array(v: Any, lo: int, hi: int, item: Any) -> bool:
    return isinstance(v, list) and lo <= len(v) <= hi and all(item(x) for x in v)


def check_payload(p: Any, on_record: bool) -> None:
    """§9: exactly one of the payload maps, else ProtocolError."""
    if not isinstance(p, dict) or not isinstance(p.get("t"), str):
        raise _Protocol("the payload is not a map with a text 't'")
    t, keys = p["t"], set(p)

    def need(fields: set[str], ok: bool) -> None:
        if keys != fields | {"t"} or not ok:
            raise _Protocol(f"a malformed {t!r} payload")

    if t == "hello":
        # pq (1 952 bytes) is required on the record and optional off it (§11.5 step 9.5).
        has_pq = "pq" in p
        pq_ok = not has_pq or (isinstance(p["pq"], bytes) and len(p["pq"]) == 1952)
        need(
            {"sig", "name", "mailboxes"} | ({"pq"} if on_record or has_pq else set()),
            pq_ok
            and isinstance(p.get("sig"), bytes)
            and len(p["sig"]) == 64
            and _name(p.get("name"))
            and _array(p.get("mailboxes"), 1, 8, _mailbox),
        )
    elif t == "welcome":
        need(set(), True)
    elif t == "msg":
        need(
            {"p", "at", "text"},
            p.get("p") in ("FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE")
            and _seq(p.get("at"))
            and isinstance(p.get("text"), str)
            and len(p["text"].encode()) <= 30000,
        )
    elif t == "delivered":
        need({"at", "upto"}, _seq(p.get("at")) and _seq(p.get("upto")))
    elif t == "ack":
        need({"at", "op", "seq"}, _seq(p.get("at")) and _name(p.get("op")) and _seq(p.get("seq")))
    elif t == "test":
        need({"at", "id"}, _seq(p.get("at")) and _seq(p.get("id")))
    elif t == "test-reply":
        need(
            {"at", "id", "held", "circuits"},
            _seq(p.get("at"))
            and _seq(p.get("id"))
            and _seq(p.get("held"))
            and _array(p.get("circuits"), 0, 8, _url),
        )
    elif t == "circuits":
        need({"add", "remove"}, _array(p.get("add"), 0, 8, _mailbox) and _array(p.get("remove"), 0, 8, _url))
    elif t == "checkpoint":
        need(
            {"h", "n", "r", "pq"},
            _array(p.get("h"), 2, 2, lambda x: isinstance(x, bytes) and len(x) == 32)
            and _array(p.get("n"), 2, 2, _seq)
            and _array(
                p.get("r"), 2, 2, lambda x: isinstance(x, bytes) and len(x) % 8 == 0 and len(x) <= 1024
            )
            and isinstance(p.get("pq"), bytes)
            and len(p["pq"]) in (0, 3309),
        )
    else:
        raise _Protocol(f"an unknown payload type {t!r}")


def decode_entry(data: bytes, line_id: bytes, d: int, n: int, ed: bytes, on_record: bool) -> dict[str, Any]:
    """§11.1's decode order: map and keys, seen, payload, then the signature."""
    entry = _strict_cbor(data)
    if (
        not isinstance(entry, dict)
        or not all(isinstance(k, str) for k in entry)
        or not set(entry) <= {"p", "seen", "sig"}
        or not {"p", "seen"} <= set(entry)
    ):
        raise _Protocol("not an entry map")
    seen = entry["seen"]
    if not (
        isinstance(seen, list)
        and len(seen) == 2
        and _seq(seen[0])
        and isinstance(seen[1], bytes)
        and len(seen[1]) == 32
    ):
        raise _Protocol("a malformed seen")
    check_payload(entry["p"], on_record)
    if on_record:
        if "sig" not in entry:
            raise _BadSig("no signature")
        if not isinstance(entry["sig"], bytes) or len(entry["sig"]) != 64:
            raise _Protocol("a signature of the wrong size")
        body = canonical({"p": entry["p"], "seen": seen})
        message = CTX_ENTRY_SIG + line_id + bytes([d]) + struct.pack(">Q", n) + body
        if not _ed_verify(ed, entry["sig"], message):
            raise _BadSig("the signature does not verify")
    elif "sig" in entry:
        raise _Protocol("a signature off the record")
    return entry


def readable_copy(v: Any) -> Any:
    """§11.4: `p` decoded, byte strings as lowercase hex, mailboxes without their send_key."""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return [readable_copy(x) for x in v]
    if isinstance(v, dict):
        return {k: readable_copy(x) for k, x in v.items() if k != "send_key"}
    return v


# ---------------------------------------------------------------- the chain (§11.2)


def genesis(line_id: bytes, d: int) -> bytes:
    return hashlib.sha256(CTX_GENESIS + line_id + bytes([d])).digest()


def chain_step(line_id: bytes, d: int, n: int, previous: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(
        CTX_ENTRY_CHAIN + line_id + bytes([d]) + struct.pack(">Q", n) + previous + digest
    ).digest()


def line_head(line_id: bytes, n0: int, h0: bytes, n1: int, h1: bytes) -> bytes:
    return hashlib.sha256(
        CTX_HEAD + line_id + struct.pack(">Q", n0) + h0 + struct.pack(">Q", n1) + h1
    ).digest()


# ---------------------------------------------------------------- the procedure (§11.5)


@dataclass
class Report:
    """What a verified export states (a part of §11.5's success report)."""

    line_id: str
    on_record: bool
    counts: list[int]
    signers: list[str]  # grouped-less fingerprints of the signers of direction 0, 1
    covered: list[int] = field(default_factory=lambda: [0, 0])
    withheld: list[tuple[int, int]] = field(default_factory=list)


def _check_key_file(k: int, data: bytes) -> dict[str, Any]:
    """Step 4 for key file k."""
    try:
        f = parse_strict_json(data)
    except ValueError as exc:
        raise Refused("key-file", f"key file {k} is not valid JSON: {exc}") from None
    sizes = {"identity_key": 32, "ed25519": 32, "mldsa65": 1952, "signature": 64}
    if (
        not isinstance(f, dict)
        or f.get("format") != "backchannel-identity/1"
        or set(f) != KEY_FILE_FIELDS
        or not all(isinstance(v, str) and _representable(v) for v in f.values())
        or any(_hex(f[name], size) is None for name, size in sizes.items())
    ):
        raise Refused("key-file", f"key file {k} is not an identity file")
    keys = {name: bytes.fromhex(f[name]) for name in sizes}
    if f["fingerprint"] != fingerprint(keys["identity_key"], keys["ed25519"], keys["mldsa65"]):
        raise Refused("key-file-fingerprint", f"key file {k} ({f['name']!r}) is forged or damaged")
    unsigned = {name: v for name, v in f.items() if name != "signature"}
    if not _ed_verify(keys["ed25519"], keys["signature"], CTX_IDENTITY + canonical(unsigned)):
        raise Refused("key-file-signature", f"key file {k}: its signature does not verify")
    return {**keys, "name": f["name"], "fingerprint": f["fingerprint"]}


def _check_shape(e: dict[str, Any]) -> None:
    """Step 2."""

    def bad(what: str) -> Refused:
        return Refused("malformed", f"the export is malformed: {what}")

    if not set(e) >= EXPORT_FIELDS or not set(e) <= EXPORT_FIELDS | {"seal"}:
        raise bad("its fields are not those of §11.4")
    if not _representable(e):
        raise bad("not representable in the canonical form")
    checks = [
        (isinstance(e["line"], str), "line"),
        (isinstance(e["on_record"], bool), "on_record"),
        (e["exported_by"] in ROLES, "exported_by"),
        (_is_int(e["exported_at"]), "exported_at"),
        (isinstance(e["stations"], dict) and set(e["stations"]) == set(ROLES), "stations"),
        (isinstance(e["counts"], list), "counts"),
        (isinstance(e["head"], str), "head"),
        (isinstance(e["entries"], list), "entries"),
    ]
    for ok, name in checks:
        if not ok:
            raise bad(name)
    if "seal" in e and (
        e["on_record"] is not True or not isinstance(e["seal"], dict) or set(e["seal"]) != {"ed25519"}
    ):
        raise bad("seal")
    if _hex(e["line_id"], 16) is None:
        raise bad("line_id")
    if "seal" in e and _hex(e["seal"]["ed25519"], 64) is None:
        raise bad("seal.ed25519")


def _check_stations(e: dict[str, Any]) -> dict[str, dict[str, bytes]]:
    """Step 3."""
    out = {}
    for role in ROLES:
        s = e["stations"][role]
        rk_sizes = (1952,) if e["on_record"] else (0, 1952)
        if (
            not isinstance(s, dict)
            or set(s) != STATION_FIELDS
            or not all(isinstance(v, str) for v in s.values())
            or _hex(s["identity_key"], 32) is None
            or _hex(s["ed25519"], 32) is None
            or _hex(s["mldsa65"], None) is None
            or len(s["mldsa65"]) // 2 not in rk_sizes
        ):
            raise Refused("malformed", f"the export is malformed: stations.{role}")
        keys = {name: bytes.fromhex(s[name]) for name in ("identity_key", "ed25519", "mldsa65")}
        if s["fingerprint"] != fingerprint(keys["identity_key"], keys["ed25519"], keys["mldsa65"]):
            raise Refused(
                "station-keys", f"the export's fingerprint of the {role} is not the one its keys give"
            )
        out[role] = keys
    return out


def verify_report(export_bytes: bytes, key_files: list[bytes], off_record: bool = False) -> Report:
    """Run §11.5 steps 0–13; raise Refused at the first failure."""
    # 0. the file
    try:
        e = parse_strict_json(export_bytes)
    except ValueError as exc:
        raise Refused("malformed", f"the export is not valid JSON: {exc}") from None
    # 1. format
    if not isinstance(e, dict) or e.get("format") != "backchannel-transcript/2":
        if isinstance(e, dict) and e.get("format") == "backchannel-transcript/1":
            raise Refused("old-format", "this is a backchannel-transcript/1 export")
        raise Refused("format", "this is not a backchannel-transcript/2 export")
    # 2. shape, 3. the export's stations
    _check_shape(e)
    on_record: bool = e["on_record"]
    line_id = bytes.fromhex(e["line_id"])
    stations = _check_stations(e)
    # 4. each key file
    files = [_check_key_file(k, data) for k, data in enumerate(key_files, 1)]
    # 5. two stations given
    if len(files) != 2:
        raise Refused("key-count", "give exactly two key files")
    if any(files[0][name] == files[1][name] for name in ("ed25519", "identity_key", "mldsa65")):
        raise Refused("same-key-file", "both key files are the same station")
    # 6. two stations in the export
    inv, acc = stations["inviter"], stations["accepter"]
    if (
        inv["ed25519"] == acc["ed25519"]
        or inv["identity_key"] == acc["identity_key"]
        or (on_record and inv["mldsa65"] == acc["mldsa65"])
    ):
        raise Refused("same-station", "the export names the same station as inviter and accepter")
    # 7. roles bound to key files
    role_keys: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        match = [f for f in files if f["ed25519"] == stations[role]["ed25519"]]
        if not match:
            raise Refused("key-mismatch", f"none of the key files is the {role}'s key in the export")
        f = match[0]
        if f["identity_key"] != stations[role]["identity_key"] or (
            on_record and f["mldsa65"] != stations[role]["mldsa65"]
        ):
            raise Refused("station-keys", f"the {role}'s keys in the export are not its key file's")
        role_keys[role] = f
    # 8. on the record
    if not off_record and not on_record:
        raise Refused("off-record", "this line is off the record: nothing in the export is signed")
    # 9. every item
    chains: list[list[bytes]] = [[genesis(line_id, 0)], [genesis(line_id, 1)]]
    kinds: list[list[str | None]] = [[], []]  # payload type per entry, None if withheld
    covered = [0, 0]
    withheld: list[tuple[int, int]] = []
    for i, item in enumerate(e["entries"], 1):
        _check_item(i, item, line_id, on_record, role_keys, chains, kinds, covered, withheld)
    # 10. the opening
    if not chains[1][1:]:
        raise Refused("opening", "the export has no hello")
    if not chains[0][1:]:
        raise Refused("opening", "the export has no welcome")
    # 11. withheld bodies covered
    if on_record:
        for d, n in withheld:
            if n > covered[d]:
                raise Refused("withheld-uncovered", f"entry {n} of direction {d}: no checkpoint covers it")
    # 12. the head
    n0, n1 = len(chains[0]) - 1, len(chains[1]) - 1
    if (
        canonical(e["counts"]) != canonical([n0, n1])
        or e["head"] != line_head(line_id, n0, chains[0][n0], n1, chains[1][n1]).hex()
    ):
        raise Refused("head", "counts and head are not those of the chains")
    # 13. the seal
    if on_record:
        if "seal" not in e:
            raise Refused("seal-missing", "the export on the record has no seal")
        unsealed = {k: v for k, v in e.items() if k != "seal"}
        message = CTX_SEAL + hashlib.sha256(canonical(unsealed)).digest()
        exporter = role_keys[e["exported_by"]]
        if not _ed_verify(exporter["ed25519"], bytes.fromhex(e["seal"]["ed25519"]), message):
            raise Refused("seal", f"the seal does not verify under the key of the {e['exported_by']}")
    return Report(
        e["line_id"],
        on_record,
        [n0, n1],
        [role_keys["inviter"]["fingerprint"], role_keys["accepter"]["fingerprint"]],
        covered,
        withheld,
    )


def _check_item(
    i: int,
    item: Any,
    line_id: bytes,
    on_record: bool,
    role_keys: dict[str, dict[str, Any]],
    chains: list[list[bytes]],
    kinds: list[list[str | None]],
    covered: list[int],
    withheld: list[tuple[int, int]],
) -> None:
    """Step 9 for item i (1-based)."""
    # 9.1
    if (
        not isinstance(item, dict)
        or item.get("direction") not in (0, 1)
        or isinstance(item.get("direction"), bool)
        or not _is_int(item.get("seq"))
    ):
        raise Refused("malformed", f"item {i} is malformed")
    d, n = item["direction"], item["seq"]
    w = f"entry {n} of direction {d} (item {i})"
    # 9.2
    if n != len(chains[d]):
        raise Refused("order", f"{w} is out of order or a gap precedes it")
    # 9.3
    is_withheld = item.get("withheld") is True
    if is_withheld and ("payload" in item or "entry" in item):
        raise Refused("withheld-text", f"{w} is marked withheld but carries its entry or a readable copy")
    if (
        set(item) != (WITHHELD_FIELDS if is_withheld else SHOWN_FIELDS)
        or not _is_int(item["recorded_at"])
        or _hex(item["hash"], 32) is None
        or (_hex(item["digest"], 32) is None if is_withheld else _hex(item["entry"], None) is None)
    ):
        raise Refused("malformed", f"{w} is malformed")
    if is_withheld:
        # 9.4
        if n == 1:
            raise Refused("withheld-opening", f"{w}: the hello/welcome may not be withheld")
        digest = bytes.fromhex(item["digest"])
        kinds[d].append(None)
        withheld.append((d, n))
    else:
        # 9.5
        data = bytes.fromhex(item["entry"])
        role = ROLES[d]
        try:
            entry = decode_entry(data, line_id, d, n, role_keys[role]["ed25519"], on_record)
        except _BadSig:
            raise Refused("signature", f"{w}: the signature does not verify under the {role}'s key") from None
        except _Protocol as exc:
            raise Refused("malformed-entry", f"{w} is malformed: {exc}") from None
        p, (seen_count, seen_head) = entry["p"], entry["seen"]
        if canonical(item["payload"]) != canonical(readable_copy(p)):
            raise Refused("readable-copy", f"{w}: the readable copy is not the entry's payload")
        other = chains[1 - d]
        if seen_count > len(other) - 1 or other[seen_count] != seen_head:
            raise Refused("seen", f"{w}: its seen is not the other direction's chain")
        _check_by_payload(
            w, d, n, p, seen_count, seen_head, on_record, line_id, role_keys, chains, kinds, covered
        )
        digest = hashlib.sha256(data).digest()
        kinds[d].append(p["t"])
    # 9.6
    h = chain_step(line_id, d, n, chains[d][n - 1], digest)
    if h.hex() != item["hash"]:
        raise Refused("chain-hash", f"{w}: the chain hash does not match (altered)")
    chains[d].append(h)


def _check_by_payload(
    w: str,
    d: int,
    n: int,
    p: dict[str, Any],
    seen_count: int,
    seen_head: bytes,
    on_record: bool,
    line_id: bytes,
    role_keys: dict[str, dict[str, Any]],
    chains: list[list[bytes]],
    kinds: list[list[str | None]],
    covered: list[int],
) -> None:
    """Step 9.5, the checks by payload type."""
    t = p["t"]
    opening = {(1, 1): "hello", (0, 1): "welcome"}
    if ((d, n) in opening and t != opening[(d, n)]) or ((d, n) not in opening and t in ("hello", "welcome")):
        raise Refused("opening", f"{w}: the hello and the welcome open the line, and only they")
    if t == "hello" and on_record and p["pq"] != role_keys["accepter"]["mldsa65"]:
        raise Refused("hello-record-key", f"{w}: the hello's record key is not the accepter's")
    if t == "welcome" and seen_count < 1:
        raise Refused("opening", f"{w}: the welcome follows the hello")
    if t == "delivered" and p["upto"] > seen_count:
        raise Refused(
            "receipt",
            f"{w}: it says entries up to {p['upto']} were delivered, but its sender "
            f"had received only {seen_count}",
        )
    if t == "ack" and not (1 <= p["seq"] <= seen_count and kinds[1 - d][p["seq"] - 1] in ("msg", None)):
        raise Refused(
            "ack", f"{w}: it acknowledges entry {p['seq']}, which is not a message its sender had received"
        )
    if t == "checkpoint":
        cn, ch, cr = p["n"], p["h"], p["r"]
        ok = (
            cn[d] == n - 1
            and ch[d] == chains[d][n - 1]
            and cn[1 - d] == seen_count
            and ch[1 - d] == seen_head
        )
        if ok:
            for dd in (0, 1):
                window = range(max(1, cn[dd] - 127), cn[dd] + 1) if cn[dd] > 0 else range(0)
                if cn[dd] > len(chains[dd]) - 1 or cr[dd] != b"".join(chains[dd][j][:8] for j in window):
                    ok = False
        if not ok:
            raise Refused("checkpoint-chain", f"{w} is a checkpoint that contradicts the chain before it")
        if on_record:
            message = (
                CTX_CHECKPOINT + line_id + struct.pack(">Q", cn[0]) + ch[0] + struct.pack(">Q", cn[1]) + ch[1]
            )
            if not _mldsa_verify(role_keys[ROLES[d]]["mldsa65"], p["pq"], message):
                raise Refused(
                    "checkpoint-signature", f"{w}: the checkpoint's ML-DSA-65 signature does not verify"
                )
        covered[d] = max(covered[d], cn[d])


def verify(
    export_bytes: bytes, key_file_bytes_list: list[bytes], off_record: bool = False
) -> tuple[str, str | None]:
    """§11.5 on an export and its key files: ("verified", None) or ("refused", first error's reason)."""
    try:
        verify_report(export_bytes, key_file_bytes_list, off_record)
    except Refused as exc:
        return "refused", exc.reason
    return "verified", None


# ---------------------------------------------------------------- the circuit frame (§7.1)

FRAME_BYTES = 4096
FRAME_PLAINTEXT = 4068  # 4 096 - nonce (12) - tag (16)
FRAGMENT_HEAD = 13  # kind (1) | seq (8) | index (1) | count (1) | length (2)
FULL_CHUNK = 4055
CTX_CIRCUIT = b"backchannel/v1 circuit\0"
CTX_HELLO_CIRCUIT = b"backchannel/v1 hello circuit\0"


class FrameRefused(Exception):
    """A frame §7.1 says a receiver MUST refuse. `reason`: "too-long" (FrameTooLarge), "size" (shorter
    than 4 096), "decrypt" (the AEAD does not open: DecryptError) or "layout" (ProtocolError)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class FrameContent:
    """What a frame that opens carries: kind "cover", or kind "fragment" with its fields."""

    kind: str
    seq: int = 0
    index: int = 0
    count: int = 0
    chunk: bytes = b""


def circuit_keys(ikm: bytes, url: str, hello: bool = False) -> tuple[bytes, bytes]:
    """HKDF(ikm, salt "", info = context | url, 64) -> (aead key, nonce key)."""
    context = CTX_HELLO_CIRCUIT if hello else CTX_CIRCUIT
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"", info=context + url.encode("utf-8")).derive(ikm)
    return okm[:32], okm[32:]


def unwrap_frame(aead_key: bytes, nonce_key: bytes, frame: bytes) -> FrameContent:
    """The receiver's three steps of §7.1, in order."""
    if len(frame) > FRAME_BYTES:
        raise FrameRefused("too-long", f"{len(frame)} bytes")
    if len(frame) != FRAME_BYTES:
        raise FrameRefused("size", f"{len(frame)} bytes")
    nonce = frame[:12]
    try:
        plaintext = ChaCha20Poly1305(aead_key).decrypt(nonce, frame[12:], b"")
    except InvalidTag:
        raise FrameRefused("decrypt") from None
    if not hmac.compare_digest(nonce, hmac.new(nonce_key, plaintext, hashlib.sha256).digest()[:12]):
        raise FrameRefused("layout", "the nonce is not HMAC-SHA256(nonce key, plaintext)[0:12]")
    if len(plaintext) != FRAME_PLAINTEXT:
        raise FrameRefused("layout", "plaintext length")
    if plaintext[0] == 0:
        if any(plaintext[17:]):
            raise FrameRefused("layout", "cover padding")
        return FrameContent("cover")
    if plaintext[0] != 1:
        raise FrameRefused("layout", f"kind {plaintext[0]}")
    seq = int.from_bytes(plaintext[1:9], "big")
    index, count = plaintext[9], plaintext[10]
    length = int.from_bytes(plaintext[11:13], "big")
    if seq < 1 or not 1 <= count <= 9 or index >= count:
        raise FrameRefused("layout", "seq, index or count")
    if not 1 <= length <= FULL_CHUNK or (index != count - 1 and length != FULL_CHUNK):
        raise FrameRefused("layout", "length")
    if any(plaintext[FRAGMENT_HEAD + length :]):
        raise FrameRefused("layout", "fragment padding")
    return FrameContent("fragment", seq, index, count, plaintext[FRAGMENT_HEAD : FRAGMENT_HEAD + length])


def reassemble(fragments: list[FrameContent]) -> bytes | None:
    """Join the fragments of one seq (copies in any order, duplicates allowed); None while incomplete."""
    chunks: dict[int, bytes] = {}
    counts = {f.count for f in fragments}
    seqs = {f.seq for f in fragments}
    if len(counts) != 1 or len(seqs) != 1:
        raise FrameRefused("layout", "fragments of several entries or counts")
    for f in fragments:
        if chunks.setdefault(f.index, f.chunk) != f.chunk:
            raise FrameRefused("layout", "two copies of one fragment differ")
    (count,) = counts
    if len(chunks) < count:
        return None
    return b"".join(chunks[i] for i in range(count))


def envelope_header(envelope: bytes) -> tuple[bytes, int, int]:
    """(line id, direction, seq) of a reassembled envelope (§7's clear header)."""
    if len(envelope) < 41 or envelope[:3] != b"BC\x01":
        raise FrameRefused("layout", "not an envelope")
    return envelope[4:20], envelope[20], int.from_bytes(envelope[21:29], "big")
