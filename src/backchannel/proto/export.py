"""Exported records, and the arbiter's procedure that verifies one (docs/PROTOCOL.md §11.4–§11.5).

An export is one JSON document (``backchannel-transcript/2``): every entry of both directions
in the order the exporting station recorded them, the two stations' public keys, and the
exporter's *seal*, an Ed25519 signature by the station named in ``exported_by`` over the
deterministic CBOR of the rest (:func:`backchannel.proto.encoding.json_as_cbor`).

:func:`verify_export` is written for the day the two parties disagree. It trusts nothing the
exporter says: the two roles must be two distinct stations, each given by its self-certifying
identity file (:mod:`backchannel.proto.identity`); every entry is checked in the chain and by
its sender's signature; an entry whose body the exporter withholds gives only its digest,
carries no text, and must be covered by a checkpoint its sender signed; every checkpoint,
receipt and acknowledgement inside the chain is checked against the chain; the hello and the
welcome must open the two directions; and the seal must verify under the key of the role that
claims to have made the export. Each refusal is a ``RecordInvalid`` whose ``reason`` names the
step, so that a verifier written from the specification can be compared with this one on the
tamper corpus (docs/vectors/record-tamper/).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backchannel.errors import BadSignature, ProtocolError, RecordInvalid
from backchannel.proto.encoding import json_as_cbor
from backchannel.proto.export_entries import (
    ROLES,
    ChainState,
    check_entry,
    fail,
    hex_bytes,
    is_int,
    readable,
    same_json,
)
from backchannel.proto.identity import StationKeys, verify_identity
from backchannel.proto.primitives import MLDSA_PUBLIC_LEN, ed25519_verify, sha256
from backchannel.proto.safety import grouped, station_fingerprint
from backchannel.proto.transcript import Transcript

EXPORT_FORMAT = "backchannel-transcript/2"
OLD_FORMATS = ("backchannel-transcript/1",)
SEAL_CONTEXT = b"backchannel/v2 export seal\x00"
__all__ = [
    "EXPORT_FORMAT",
    "SEAL_CONTEXT",
    "Signer",
    "VerifiedExport",
    "parse_document",
    "readable",
    "seal_export",
    "seal_message",
    "station_block",
    "verify_export",
]

MAX_DEPTH = 32  # levels a value may lie inside a signed JSON document (as encoding.json_as_cbor)
TOP_FIELDS = frozenset(
    {
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
)
STATION_FIELDS = frozenset({"name", "identity_key", "ed25519", "mldsa65", "fingerprint"})


@dataclass(frozen=True)
class Signer:
    """Who signed one direction: its role, its name (from its identity file) and fingerprint."""

    role: str
    name: str
    fingerprint: str  # grouped in fives, as the operators read it aloud


@dataclass(frozen=True)
class VerifiedExport:
    line_id: str
    on_record: bool
    counts: tuple[int, int]
    head: str
    exported_by: str  # the role whose seal verified
    exported_at: int  # ms, the exporter's clock (its claim)
    signers: tuple[Signer, Signer]  # of direction 0 and direction 1
    checkpoints: tuple[str, ...]  # "entry N of direction D" for every checkpoint in the chain
    covered: tuple[int, int]  # entries of each direction covered by a checkpoint its sender signed
    withheld: tuple[str, ...] = ()  # entries whose body the exporter withheld (digest only)
    # The station's check of its own record only (no key files): what an arbiter would refuse.
    unreadable: tuple[str, ...] = ()  # withheld entries no checkpoint covers: frames it could not read
    contradicted: tuple[str, ...] = ()  # peer checkpoints that contradict this station's chain


# ---- making an export ---------------------------------------------------------------------------


def seal_message(doc: dict[str, Any]) -> bytes:
    """What the seal signs: the context, then SHA-256 of the deterministic CBOR of the export
    without its ``seal``; ``exported_by`` and ``exported_at`` are inside, so both are bound."""
    body = {k: v for k, v in doc.items() if k != "seal"}
    return SEAL_CONTEXT + sha256(json_as_cbor(body, "export"))


def seal_export(doc: dict[str, Any], sign: Callable[[bytes], bytes]) -> None:
    """Add the exporter's seal (``sign`` is the Ed25519 key of the role in ``exported_by``)."""
    doc["seal"] = {"ed25519": sign(seal_message(doc)).hex()}


def station_block(name: str, identity_key: bytes, ed25519: bytes, mldsa65: bytes) -> dict[str, str]:
    return {
        "name": name,
        "identity_key": identity_key.hex(),
        "ed25519": ed25519.hex(),
        "mldsa65": mldsa65.hex(),
        "fingerprint": station_fingerprint(identity_key, ed25519, mldsa65),
    }


# ---- the arbiter's procedure --------------------------------------------------------------------


def parse_document(text: bytes) -> Any:
    """Step 0: a file's bytes as strict JSON (RFC 8259): UTF-8, no duplicate names, no NaN.

    Why strict: the seal and the identity signature cover the *parsed* document, so two
    readers that parse the same file differently see two documents under one signature. A
    name given twice in an object is the case in point: Python, like most parsers, keeps the
    last value, others keep the first or refuse, so a third party could put a decoy before a
    sealed value ("text": "we ordered the strike", "text": <the real text>) without touching
    the seal. Raises ``ValueError`` (the caller names the document).
    """

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"an object gives the name {twice[0]!r} more than once")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        value = json.loads(text.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except RecursionError:
        raise ValueError(f"it is nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    # The same bound as the canonical form's, checked here so that every verifier refuses a
    # deep file at this step, whatever depth its own JSON parser happens to accept.
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"it is nested more than {MAX_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return value


def verify_export(
    doc: Any, key_files: Sequence[Any] | None, require_signatures: bool = True
) -> VerifiedExport:
    """Verify an exported record against the two stations' identity files (in any order).

    ``doc`` and each key file are either the bytes of the file, parsed strictly at step 0
    (:func:`parse_document`; the command line passes bytes), or an already parsed document.
    Raises ``RecordInvalid`` (with ``reason``) at the first step that fails. ``key_files``
    None is the station's check of its own fresh export: the keys are those it holds, and the
    checkpoints of the peer that contradict its chain and the entries it could not read are
    listed in the result instead of refused. Off the record nothing is signed: the export is
    refused unless ``require_signatures`` is False, and then only its consistency is checked.
    """
    if isinstance(doc, bytes):
        try:
            doc = parse_document(doc)
        except ValueError as exc:
            fail("malformed", f"the export is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        fail("format", "this is not a backchannel transcript export")
    if doc.get("format") in OLD_FORMATS:
        fail(
            "old-format",
            f"this is a {doc['format']} export, made by an older version whose seal was not specified: "
            f"it cannot serve as evidence; export the line again to get a {EXPORT_FORMAT} export",
        )
    if doc.get("format") != EXPORT_FORMAT:
        fail("format", f"this is not a {EXPORT_FORMAT} export")
    try:
        return _verify(doc, key_files, require_signatures)
    except RecordInvalid:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ProtocolError) as exc:
        fail("malformed", f"the export is malformed: {exc}")


def _verify(doc: dict[str, Any], key_files: Sequence[Any] | None, require_signatures: bool) -> VerifiedExport:
    _check_shape(doc)
    on_record: bool = doc["on_record"]
    stations = {role: _station(doc["stations"][role], role, on_record) for role in ROLES}
    given = _key_files(key_files) if key_files is not None else None
    inviter, accepter = stations["inviter"], stations["accepter"]
    if (
        inviter.ed25519 == accepter.ed25519
        or inviter.identity_key == accepter.identity_key
        or (on_record and inviter.mldsa65 == accepter.mldsa65)
    ):
        fail(
            "same-station",
            f"the export names the same station as inviter and accepter ({inviter.name!r}): a record needs "
            "two distinct stations, and one key signing both directions is a forgery by that station",
        )
    if given is not None:
        stations = {role: _bind(role, stations[role], given, on_record) for role in ROLES}
    if not on_record and require_signatures:
        fail(
            "off-record",
            "this line is off the record: nothing in the export is signed, so it proves nothing to a "
            "third party (deniable by design)",
        )
    state = ChainState(
        hex_bytes(doc["line_id"], 16, "line_id"),
        on_record,
        key_files is None,
        {0: stations["inviter"], 1: stations["accepter"]},
    )
    for index, item in enumerate(doc["entries"]):
        check_entry(state, index, item)
    if not state.chains[1]:
        fail("opening", "the export has no hello (entry 1 of direction 1): every record starts with it")
    if not state.chains[0]:
        fail("opening", "the export has no welcome (entry 1 of direction 0): the line was never established")
    unreadable = []
    for direction, seq, where in state.withheld:
        if on_record and state.covered[direction] < seq:
            if not state.own:
                fail(
                    "withheld-uncovered",
                    f"{where}: its body is withheld and no checkpoint signed by its sender "
                    f"({ROLES[direction]}) covers it, so nothing proves what it was",
                )
            unreadable.append(where)
    counts = (len(state.chains[0]), len(state.chains[1]))
    head = Transcript(
        state.line_id, counts, (state.head_at(0, counts[0]), state.head_at(1, counts[1]))
    ).head()
    if not same_json(doc["counts"], list(counts)) or doc["head"] != head.hex():
        fail("head", "the export's counts and final head do not match its entries")
    exported_by: str = doc["exported_by"]
    if on_record:
        if "seal" not in doc:
            fail("seal-missing", "the export has no seal: nothing binds it to the station that made it")
        try:
            signature = hex_bytes(doc["seal"]["ed25519"], 64, "seal")
            ed25519_verify(stations[exported_by].ed25519, signature, seal_message(doc))
        except BadSignature:
            fail(
                "seal",
                f"the seal does not verify under the key of the {exported_by} "
                f"({stations[exported_by].name!r}), which exported_by names: the export was changed "
                "after it was made (a time, a name, a "
                "field), or it was sealed by another station",
            )
    signers = tuple(Signer(role, stations[role].name, grouped(stations[role].fingerprint)) for role in ROLES)
    return VerifiedExport(
        state.line_id.hex(),
        on_record,
        counts,
        head.hex(),
        exported_by,
        doc["exported_at"],
        (signers[0], signers[1]),
        tuple(state.checkpoints),
        (min(state.covered[0], counts[0]), min(state.covered[1], counts[1])),
        tuple(where for _, _, where in state.withheld),
        tuple(unreadable),
        tuple(state.contradicted),
    )


# ---- steps ----------------------------------------------------------------------------------


def _check_shape(doc: dict[str, Any]) -> None:
    """Step 2: every field present, of its type, and no other; every number an integer."""
    fields = set(doc)
    missing, unknown = TOP_FIELDS - fields, fields - TOP_FIELDS - {"seal"}
    if missing or unknown:
        fail(
            "malformed",
            f"the export is malformed: fields missing {sorted(missing)}, unknown {sorted(unknown)}",
        )
    try:
        json_as_cbor(doc, "export")
    except ProtocolError as exc:
        fail("malformed", f"the export is malformed: {exc}")
    ok = (
        isinstance(doc["line"], str)
        and isinstance(doc["on_record"], bool)
        and doc["exported_by"] in ROLES
        and is_int(doc["exported_at"])
        and isinstance(doc["stations"], dict)
        and set(doc["stations"]) == set(ROLES)
        and isinstance(doc["counts"], list)
        and isinstance(doc["head"], str)
        and isinstance(doc["entries"], list)
    )
    if not ok:
        fail("malformed", "the export is malformed: a field has the wrong type or value")
    if "seal" in doc and (
        not doc["on_record"] or not isinstance(doc["seal"], dict) or set(doc["seal"]) != {"ed25519"}
    ):
        fail("malformed", 'the export is malformed: the seal must be {"ed25519": …}, on the record only')
    hex_bytes(doc["line_id"], 16, "line_id")
    if "seal" in doc:
        hex_bytes(doc["seal"]["ed25519"], 64, "the seal")


def _station(block: Any, role: str, on_record: bool) -> StationKeys:
    if (
        not isinstance(block, dict)
        or set(block) != STATION_FIELDS
        or not all(isinstance(v, str) for v in block.values())
    ):
        fail(
            "malformed",
            f"the export is malformed: the {role}'s keys must be {sorted(STATION_FIELDS)}, all text",
        )
    identity_key, ed25519 = (
        hex_bytes(block["identity_key"], 32, "identity_key"),
        hex_bytes(block["ed25519"], 32, "ed25519"),
    )
    mldsa65 = hex_bytes(block["mldsa65"], MLDSA_PUBLIC_LEN if on_record or block["mldsa65"] else 0, "mldsa65")
    expected = station_fingerprint(identity_key, ed25519, mldsa65)
    if block["fingerprint"] != expected:
        fail("station-keys", f"the export's fingerprint of the {role} is not the one its keys give")
    return StationKeys(block["name"], identity_key, ed25519, mldsa65, expected)


def _key_files(key_files: Sequence[Any]) -> list[StationKeys]:
    """Steps 3–4: each key file self-certifying; exactly two, of two distinct stations."""
    keys = [verify_identity(_parsed_key_file(k, i + 1), f"key file {i + 1}") for i, k in enumerate(key_files)]
    if len(keys) != 2:
        fail("key-count", f"give exactly two key files, the inviter's and the accepter's (got {len(keys)})")
    a, b = keys
    if a.ed25519 == b.ed25519 or a.identity_key == b.identity_key or a.mldsa65 == b.mldsa65:
        fail(
            "same-key-file",
            f"both key files are the same station ({a.name!r}, fingerprint {grouped(a.fingerprint)}): "
            "give the inviter's and the accepter's",
        )
    return keys


def _parsed_key_file(value: Any, number: int) -> Any:
    if not isinstance(value, bytes):
        return value
    try:
        return parse_document(value)
    except ValueError as exc:
        raise RecordInvalid(f"key file {number} is not valid JSON: {exc}", "key-file") from None


def _bind(role: str, exported: StationKeys, given: list[StationKeys], on_record: bool) -> StationKeys:
    """Step 6: the role's key in the export is one of the key files, with all its keys."""
    match = [k for k in given if k.ed25519 == exported.ed25519]
    if not match:
        fail(
            "key-mismatch",
            f"none of the key files is the {role}'s key in the export ({exported.name!r}): the export "
            "was signed by a station whose key file you were not given",
        )
    keys = match[0]
    if keys.identity_key != exported.identity_key or (on_record and keys.mldsa65 != exported.mldsa65):
        fail("station-keys", f"the {role}'s keys in the export differ from its key file ({keys.name!r})")
    return keys
