"""Generate docs/vectors/record-tamper/: genuine and tampered exports with their expected verdicts.

Every file is made from fixed seeds with the project's own code (entries by
``proto.record.encode_entry``, seals by ``proto.export.seal_export``, identity files by
``proto.identity.identity_document``), the way a party holding only its own station's keys
would make a forgery. ``manifest.jsonl`` has one line per case: the export, the key files in
the order given to ``verify-export``, whether ``--off-record`` is passed, and the expected
verdict with the expected first error (``reason``, docs/PROTOCOL.md §11.5).
tests/conformance/test_record_tamper.py runs the verifier on every case.

ML-DSA-65 signing in OpenSSL is hedged (randomised), so the checkpoints' signatures are kept in
``mldsa-signatures.json`` and reused while they verify: running the tool again rewrites every
file byte for byte. Without that file (or for a new message) it signs afresh.

    python tools/gen_record_tamper.py            # write the corpus
    python tools/gen_record_tamper.py --check    # exit 1 if a file differs from what it would write
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backchannel.clock import FakeRng
from backchannel.errors import BadSignature, RecordInvalid
from backchannel.proto.export import EXPORT_FORMAT, readable, seal_export, station_block, verify_export
from backchannel.proto.identity import identity_document
from backchannel.proto.invitation import MailboxCapability
from backchannel.proto.payloads import (
    Acknowledged,
    Checkpoint,
    Delivered,
    Hello,
    Message,
    Payload,
    Precedence,
    Welcome,
    hello_binding,
)
from backchannel.proto.primitives import (
    ed25519_public_from_seed,
    ed25519_sign,
    mldsa_public,
    mldsa_sign,
    mldsa_verify,
    sha256,
    x25519_public,
)
from backchannel.proto.record import Seen, checkpoint_message, encode_entry, short_hashes
from backchannel.proto.transcript import Transcript

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "vectors" / "record-tamper"
T0 = 1_700_000_000_000  # ms: the first entry's time on the exporters' clocks


def fixed(label: str, n: int) -> bytes:
    return FakeRng(b"backchannel record-tamper/" + label.encode("ascii")).bytes(n)


# ---- stations and signatures ----------------------------------------------------------------


@dataclass(frozen=True)
class StationSeeds:
    """One station's secrets, from fixed seeds: what a party holds of its own station."""

    label: str
    name: str

    @property
    def ed_seed(self) -> bytes:
        return fixed(self.label + "/ed25519", 32)

    @property
    def pq_seed(self) -> bytes:
        return fixed(self.label + "/mldsa65", 32)

    @property
    def identity_key(self) -> bytes:
        return x25519_public(fixed(self.label + "/curve25519", 32))

    @property
    def ed25519(self) -> bytes:
        return ed25519_public_from_seed(self.ed_seed)

    @property
    def mldsa65(self) -> bytes:
        return mldsa_public(self.pq_seed)

    def sign(self, message: bytes) -> bytes:
        return ed25519_sign(self.ed_seed, message)

    def identity_file(self, name: str | None = None) -> dict[str, Any]:
        return identity_document(name or self.name, self.identity_key, self.ed25519, self.mldsa65, self.sign)

    def block(self, name: str | None = None, on_record: bool = True) -> dict[str, str]:
        return station_block(
            name or self.name, self.identity_key, self.ed25519, self.mldsa65 if on_record else b""
        )


WASHINGTON = StationSeeds("washington", "washington")
MOSCOW = StationSeeds("moscow", "moscow")
KYIV = StationSeeds("kyiv", "kyiv")  # a third station, not on the line
IMPOSTOR = StationSeeds("impostor", "moscow")  # a key washington made to pose as moscow


@dataclass
class Signatures:
    """ML-DSA-65 signatures kept between runs (signing is randomised): reused while they verify."""

    known: dict[str, str]
    used: dict[str, str] = field(default_factory=dict)

    def sign(self, seed: bytes, message: bytes) -> bytes:
        public = mldsa_public(seed)
        key = sha256(public + message).hex()
        cached = self.known.get(key)
        if cached is not None:
            try:
                mldsa_verify(public, bytes.fromhex(cached), message)
                self.used[key] = cached
                return bytes.fromhex(cached)
            except BadSignature:
                pass
        fresh = mldsa_sign(seed, message)
        self.used[key] = self.known[key] = fresh.hex()
        return fresh


# ---- a conversation -----------------------------------------------------------------------------

#: (direction, payload); None stands for a checkpoint of the chains as they stand.
Script = list[tuple[int, Payload | None]]


def line_id() -> bytes:
    return fixed("line-id", 16)


def hello(accepter: StationSeeds, pq_key: bytes | None = None) -> Hello:
    cap = MailboxCapability(
        "ws://127.0.0.1:7000", fixed("mailbox/send-id", 16), fixed("mailbox/send-key", 32)
    )
    binding = accepter.sign(hello_binding(line_id(), accepter.identity_key, fixed("invitation-digest", 32)))
    return Hello(accepter.name, (cap,), binding, accepter.mldsa65 if pq_key is None else pq_key)


def genuine_script() -> Script:
    msg = Precedence.FLASH
    return [
        (1, hello(MOSCOW)),
        (0, Welcome()),
        (0, Message(msg, "Unidentified aircraft over the border at 14:02. Are they yours?", T0 + 60_000)),
        (1, Delivered(2, T0 + 61_000)),
        (1, Acknowledged(2, "ivanova", T0 + 75_000)),
        (1, Message(Precedence.IMMEDIATE, "Not ours. We have no aircraft in that sector.", T0 + 90_000)),
        (0, Delivered(4, T0 + 91_000)),
        (0, None),
        (1, None),
        (0, Message(Precedence.ROUTINE, "Understood. Standing down.", T0 + 120_000)),
        (1, Delivered(5, T0 + 121_000)),
        (1, None),
    ]


def converse(
    script: Script,
    signers: dict[int, StationSeeds],
    sigs: Signatures,
    on_record: bool = True,
) -> list[dict[str, Any]]:
    """Seal the script's entries in order, each having seen everything before it."""
    lid = line_id()
    t = Transcript.start(lid)
    chains: dict[int, list[bytes]] = {0: [], 1: []}
    out = []
    for direction, maybe in script:
        signer = signers[direction]
        payload: Payload
        if maybe is None:
            recent = (short_hashes(chains[0]), short_hashes(chains[1]))
            pq = sigs.sign(signer.pq_seed, checkpoint_message(lid, t.counts, t.heads)) if on_record else b""
            payload = Checkpoint(t.counts, t.heads, recent, pq)
        else:
            payload = maybe
        seq = t.counts[direction] + 1
        seen = Seen(t.counts[1 - direction], t.heads[1 - direction])
        raw = encode_entry(payload, seen, lid, direction, seq, signer.sign if on_record else None)
        t = t.append(direction, seq, raw)
        chains[direction].append(t.heads[direction])
        out.append(
            {"direction": direction, "seq": seq, "raw": raw, "payload": payload, "hash": t.heads[direction]}
        )
    return out


def export(
    entries: list[dict[str, Any]],
    stations: dict[str, dict[str, str]],
    exported_by: str,
    sealer: StationSeeds | None,
    on_record: bool = True,
    withhold: tuple[tuple[int, int], ...] = (),
) -> dict[str, Any]:
    """The export a station writes (``Recorder.export``), sealed by ``sealer`` on the record."""
    items = []
    for i, e in enumerate(entries):
        item: dict[str, Any] = {"direction": e["direction"], "seq": e["seq"]}
        if (e["direction"], e["seq"]) in withhold:
            item.update(withheld=True, digest=sha256(e["raw"]).hex())
        else:
            item.update(entry=e["raw"].hex(), payload=readable(e["payload"].to_cbor()))
        item.update(hash=e["hash"].hex(), recorded_at=T0 + 10_000 * (i + 1))
        items.append(item)
    doc = {
        "format": EXPORT_FORMAT,
        "line_id": line_id().hex(),
        "line": "hotline",
        "on_record": on_record,
        "exported_by": exported_by,
        "exported_at": T0 + 3_600_000,
        "stations": stations,
        "counts": [0, 0],
        "head": "",
        "entries": items,
    }
    recompute_head(doc, entries)
    if on_record and sealer is not None:
        seal_export(doc, sealer.sign)
    return doc


def recompute_head(doc: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """Set counts and head from ``entries`` (what a forger does after cutting the tail)."""
    t = Transcript.start(line_id())
    for e in entries:
        t = t.append(e["direction"], e["seq"], e["raw"])
    doc["counts"], doc["head"] = list(t.counts), t.head().hex()


def genuine_stations(on_record: bool = True) -> dict[str, dict[str, str]]:
    return {"inviter": WASHINGTON.block(on_record=on_record), "accepter": MOSCOW.block(on_record=on_record)}


# ---- the cases ------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    doc: Any
    keys: list[str]
    verdict: str  # "verified" or "refused"
    reason: str | None
    note: str
    off_record: bool = False
    signers: list[str] | None = None  # expected fingerprints of directions 0 and 1 when verified
    text: str | None = None  # the file as written, when it is not the JSON of ``doc`` (invalid JSON)


def flip_hex(value: str, byte: int) -> str:
    raw = bytearray(bytes.fromhex(value))
    raw[byte] ^= 0x01
    return raw.hex()


def build_cases(sigs: Signatures) -> tuple[list[Case], dict[str, Any]]:
    both = {0: WASHINGTON, 1: MOSCOW}
    genuine = converse(genuine_script(), both, sigs)
    by_w = export(genuine, genuine_stations(), "inviter", WASHINGTON)
    by_m = export(genuine, genuine_stations(), "accepter", MOSCOW)
    w_m = ["washington.json", "moscow.json"]
    impostor_file = IMPOSTOR.identity_file()
    forged_fingerprint = dict(impostor_file, fingerprint=MOSCOW.identity_file()["fingerprint"])
    renamed = dict(MOSCOW.identity_file(), name="moscow (ministry)")
    old_style = {
        k: v for k, v in MOSCOW.identity_file().items() if k in ("name", "ed25519", "mldsa65", "fingerprint")
    }
    moscow_twice_named = dump(MOSCOW.identity_file()).replace(
        '"name": "moscow"', '"name": "washington",\n "name": "moscow"', 1
    )
    key_files: dict[str, Any] = {
        "moscow-name-given-twice.json": moscow_twice_named,
        "washington.json": WASHINGTON.identity_file(),
        "moscow.json": MOSCOW.identity_file(),
        "kyiv.json": KYIV.identity_file(),
        "moscow-impostor.json": impostor_file,
        "moscow-forged-fingerprint.json": forged_fingerprint,
        "moscow-renamed.json": renamed,
        "moscow-old-style.json": old_style,
    }
    fp = {n: key_files[n + ".json"]["fingerprint"] for n in ("washington", "moscow", "moscow-impostor")}
    cases: list[Case] = []

    def case(name: str, doc: Any, verdict: str, reason: str | None, note: str, **kw: Any) -> None:
        kw.setdefault("keys", w_m)
        cases.append(Case(name, doc, verdict=verdict, reason=reason, note=note, **kw))

    def variant(
        base: dict[str, Any], change: Callable[[dict[str, Any]], None], reseal: StationSeeds | None = None
    ) -> dict[str, Any]:
        doc = copy.deepcopy(base)
        change(doc)
        if reseal is not None:
            doc.pop("seal", None)
            seal_export(doc, reseal.sign)
        return doc

    signers = [fp["washington"], fp["moscow"]]
    # -- genuine ---------------------------------------------------------------------------------
    case("genuine-export-by-the-inviter", by_w, "verified", None, "as washington exports it", signers=signers)
    case("genuine-export-by-the-accepter", by_m, "verified", None, "as moscow exports it", signers=signers)
    case(
        "genuine-key-files-in-the-other-order",
        by_w,
        "verified",
        None,
        "key files are matched to the roles by their keys, in any order",
        keys=["moscow.json", "washington.json"],
        signers=signers,
    )
    withheld_covered = export(genuine, genuine_stations(), "inviter", WASHINGTON, withhold=((1, 4),))
    case(
        "genuine-body-withheld-and-covered",
        withheld_covered,
        "verified",
        None,
        "moscow's message 4 withheld by washington: digest only, covered by moscow's checkpoint 5",
        signers=signers,
    )
    off = converse(genuine_script(), both, sigs, on_record=False)
    off_doc = export(off, genuine_stations(on_record=False), "inviter", None, on_record=False)
    case(
        "genuine-off-the-record-consistency-only",
        off_doc,
        "verified",
        None,
        "--off-record: the chain is consistent, nothing is signed",
        off_record=True,
        signers=signers,
    )
    cut = genuine[:9]
    truncated_resealed = export(cut, genuine_stations(), "inviter", WASHINGTON)
    case(
        "tail-cut-head-recomputed-resealed-by-its-exporter",
        truncated_resealed,
        "verified",
        None,
        "an export cannot prove that no entries came after its last one (PROTOCOL §11.5)",
        signers=signers,
    )
    # -- key files -------------------------------------------------------------------------------
    case(
        "same-key-file-twice",
        by_w,
        "refused",
        "same-key-file",
        "washington's file given twice",
        keys=["washington.json", "washington.json"],
    )
    case("one-key-file", by_w, "refused", "key-count", "only washington's file", keys=["washington.json"])
    case(
        "three-key-files",
        by_w,
        "refused",
        "key-count",
        "a third station's file too",
        keys=["washington.json", "moscow.json", "kyiv.json"],
    )
    case(
        "forged-key-file-with-the-real-name-and-fingerprint",
        by_w,
        "refused",
        "key-file-fingerprint",
        "moscow's name and fingerprint over another key",
        keys=["washington.json", "moscow-forged-fingerprint.json"],
    )
    case(
        "key-file-renamed",
        by_w,
        "refused",
        "key-file-signature",
        "moscow's file with its name changed",
        keys=["washington.json", "moscow-renamed.json"],
    )
    case(
        "key-file-without-its-identity-key",
        by_w,
        "refused",
        "key-file",
        "the old identity --json (one of the two fingerprinted keys missing, no signature)",
        keys=["washington.json", "moscow-old-style.json"],
    )
    case(
        "key-file-of-another-station",
        by_w,
        "refused",
        "key-mismatch",
        "kyiv's file instead of moscow's",
        keys=["washington.json", "kyiv.json"],
    )
    impostor_entries = converse(
        _with_hello(genuine_script(), hello(IMPOSTOR)), {0: WASHINGTON, 1: IMPOSTOR}, sigs
    )
    impostor_doc = export(
        impostor_entries,
        {"inviter": WASHINGTON.block(), "accepter": IMPOSTOR.block()},
        "inviter",
        WASHINGTON,
    )
    case(
        "a-self-consistent-key-file-for-a-new-key-named-moscow",
        impostor_doc,
        "verified",
        None,
        "washington made a key called moscow and signed moscow's side with it: it verifies, and only the "
        "fingerprint printed for direction 1, which differs from the one the operators read, shows it",
        keys=["washington.json", "moscow-impostor.json"],
        signers=[fp["washington"], fp["moscow-impostor"]],
    )
    case(
        "stations-swapped-in-the-export",
        variant(
            by_w,
            lambda d: d.update(
                stations={"inviter": d["stations"]["accepter"], "accepter": d["stations"]["inviter"]}
            ),
            WASHINGTON,
        ),
        "refused",
        "signature",
        "the roles exchanged: moscow's hello does not verify under washington's key",
    )
    case(
        "station-fingerprint-altered",
        variant(by_w, lambda d: d["stations"]["accepter"].update(fingerprint="0" * 30)),
        "refused",
        "station-keys",
        "the export's fingerprint of moscow is not that of its keys",
    )
    case(
        "station-record-key-replaced",
        variant(
            by_w,
            lambda d: d["stations"].update(
                accepter=station_block("moscow", MOSCOW.identity_key, MOSCOW.ed25519, KYIV.mldsa65)
            ),
            WASHINGTON,
        ),
        "refused",
        "station-keys",
        "moscow's ML-DSA-65 key in the export is kyiv's, fingerprint recomputed",
    )
    # -- one key for both directions -------------------------------------------------------------
    confession = _confession_script(hello(WASHINGTON, WASHINGTON.mldsa65))
    one_key = converse(confession, {0: WASHINGTON, 1: WASHINGTON}, sigs)
    case(
        "one-key-signs-both-directions",
        export(
            one_key,
            {"inviter": WASHINGTON.block(), "accepter": WASHINGTON.block("moscow")},
            "inviter",
            WASHINGTON,
        ),
        "refused",
        "same-station",
        "washington wrote moscow's confession and signed both directions with its own key",
    )
    case(
        "one-key-under-moscows-name-in-the-export",
        export(
            converse(confession, {0: WASHINGTON, 1: WASHINGTON}, sigs),
            genuine_stations(),
            "inviter",
            WASHINGTON,
        ),
        "refused",
        "signature",
        "the confession signed by washington, moscow's real keys in the export",
    )
    moscow_script = genuine_script()
    moscow_script[2] = (
        0,
        Message(Precedence.FLASH, "We ordered the aircraft in. Do not respond.", T0 + 60_000),
    )
    by_moscow_alone = converse(_with_hello(moscow_script, hello(MOSCOW)), {0: MOSCOW, 1: MOSCOW}, sigs)
    case(
        "one-key-signs-both-directions-by-the-accepter",
        export(
            by_moscow_alone,
            {"inviter": MOSCOW.block("washington"), "accepter": MOSCOW.block()},
            "accepter",
            MOSCOW,
        ),
        "refused",
        "same-station",
        "moscow wrote washington's side and signed both directions with its own key",
    )
    # -- withheld bodies -------------------------------------------------------------------------

    def relabel(d: dict[str, Any]) -> None:
        item = d["entries"][5]
        item.update(withheld=True, digest=sha256(bytes.fromhex(item.pop("entry"))).hex())
        item["payload"] = {
            "t": "msg",
            "p": "FLASH",
            "text": "Confirmed: it is ours, and we ordered the strike.",
            "at": T0 + 90_000,
        }

    case(
        "withheld-relabelling-with-new-text",
        variant(by_w, relabel, WASHINGTON),
        "refused",
        "withheld-text",
        "moscow's genuine signed entry marked withheld with a text beside it (the old 'spent')",
    )

    def keep_bytes(d: dict[str, Any]) -> None:
        d["entries"][5].update(withheld=True, digest="00" * 32)
        del d["entries"][5]["payload"]

    case(
        "withheld-with-its-entry-bytes",
        variant(by_w, keep_bytes, WASHINGTON),
        "refused",
        "withheld-text",
        "a withheld body never comes with its bytes",
    )
    case(
        "withheld-and-uncovered",
        export(genuine, genuine_stations(), "inviter", WASHINGTON, withhold=((0, 5),)),
        "refused",
        "withheld-uncovered",
        "washington's message 5 withheld: no checkpoint washington signed covers it",
    )
    case(
        "withheld-hello",
        export(genuine, genuine_stations(), "inviter", WASHINGTON, withhold=((1, 1),)),
        "refused",
        "withheld-opening",
        "the hello cannot be withheld",
    )
    case(
        "withheld-digest-altered",
        variant(
            withheld_covered,
            lambda d: d["entries"][5].update(digest=flip_hex(d["entries"][5]["digest"], 0)),
            WASHINGTON,
        ),
        "refused",
        "chain-hash",
        "a withheld entry's digest is checked by the chain",
    )
    case(
        "old-spent-flag",
        variant(by_w, lambda d: d["entries"][5].update(spent=True), WASHINGTON),
        "refused",
        "malformed",
        "'spent' is no longer a field of an export",
    )
    # -- the seal ---------------------------------------------------------------------------------

    def move_times(d: dict[str, Any]) -> None:
        for item in d["entries"]:
            item["recorded_at"] += 3_600_000

    case(
        "resealed-by-the-other-party",
        variant(by_m, move_times, WASHINGTON),
        "refused",
        "seal",
        "moscow's export with its times moved, resealed by washington (exported_by still names moscow)",
    )
    case(
        "resealed-by-the-other-party-the-accepter",
        variant(by_w, move_times, MOSCOW),
        "refused",
        "seal",
        "washington's export with its times moved, resealed by moscow (exported_by still names washington)",
    )
    case(
        "resealed-by-the-other-party-as-its-own",
        variant(by_m, lambda d: (move_times(d), d.update(exported_by="inviter")), WASHINGTON),
        "verified",
        None,
        "now washington's export, honestly so: its times are washington's claims, never proven",
        signers=signers,
    )
    case("seal-missing", variant(by_w, lambda d: d.pop("seal")), "refused", "seal-missing", "no seal")
    case(
        "seal-flipped",
        variant(by_w, lambda d: d["seal"].update(ed25519=flip_hex(d["seal"]["ed25519"], 5))),
        "refused",
        "seal",
        "one bit of the seal",
    )
    case(
        "export-time-moved",
        variant(by_w, lambda d: d.update(exported_at=d["exported_at"] - 86_400_000)),
        "refused",
        "seal",
        "exported_at a day earlier",
    )
    case(
        "exporter-changed",
        variant(by_w, lambda d: d.update(exported_by="accepter")),
        "refused",
        "seal",
        "exported_by names moscow on washington's export",
    )
    case(
        "recorded-time-moved",
        variant(by_w, lambda d: d["entries"][2].update(recorded_at=T0)),
        "refused",
        "seal",
        "one recorded_at changed",
    )
    case(
        "line-name-changed",
        variant(by_w, lambda d: d.update(line="the other line")),
        "refused",
        "seal",
        "the exporter's name of the line changed",
    )
    case(
        "old-format",
        variant(by_w, lambda d: d.update(format="backchannel-transcript/1")),
        "refused",
        "old-format",
        "an export of the first format",
    )
    case("not-an-export", {"format": "something else"}, "refused", "format", "not an export")
    case(
        "a-time-with-a-fraction",
        variant(by_w, lambda d: d.update(exported_at=1.5)),
        "refused",
        "malformed",
        "numbers are integers only (the seal's canonical form has no floats)",
    )
    case(
        "an-unknown-field",
        variant(by_w, lambda d: d.update(comment="x")),
        "refused",
        "malformed",
        "an unknown field",
    )
    case("entries-missing", variant(by_w, lambda d: d.pop("entries")), "refused", "malformed", "no entries")
    # -- the chain ---------------------------------------------------------------------------------

    def cut_tail(d: dict[str, Any], recompute: bool) -> None:
        del d["entries"][9:]
        if recompute:
            recompute_head(d, genuine[:9])

    case(
        "tail-cut-head-recomputed-not-resealed",
        variant(by_w, lambda d: cut_tail(d, True)),
        "refused",
        "seal",
        "the last three entries cut and the head recomputed by someone without the exporter's key",
    )
    case(
        "tail-cut-head-kept",
        variant(by_w, lambda d: cut_tail(d, False)),
        "refused",
        "head",
        "the last three entries cut",
    )
    bad_cp = genuine[:9] + converse_more(genuine[:9], [(0, "contradicting-checkpoint")], both, sigs)
    case(
        "inserted-checkpoint-contradicting-the-chain",
        export(bad_cp, genuine_stations(), "inviter", WASHINGTON),
        "refused",
        "checkpoint-chain",
        "washington's checkpoint 5 claims moscow had 5 entries where it had 4",
    )
    bad_pq = genuine[:9] + converse_more(genuine[:9], [(0, "bad-mldsa-checkpoint")], both, sigs)
    case(
        "checkpoint-with-a-bad-mldsa-signature",
        export(bad_pq, genuine_stations(), "inviter", WASHINGTON),
        "refused",
        "checkpoint-signature",
        "a checkpoint whose ML-DSA-65 signature is flipped, Ed25519-signed",
    )
    for name, payload, reason, note in (
        (
            "ack-of-a-missing-entry",
            Acknowledged(9, "smith", T0 + 200_000),
            "ack",
            "washington acknowledges moscow's entry 9, which does not exist",
        ),
        (
            "ack-of-a-receipt",
            Acknowledged(2, "smith", T0 + 200_000),
            "ack",
            "washington acknowledges moscow's entry 2, a delivered receipt, not a message",
        ),
        (
            "receipt-beyond-seen",
            Delivered(7, T0 + 200_000),
            "receipt",
            "washington says moscow's entries up to 7 were delivered when it had seen 5",
        ),
    ):
        more = genuine[:10] + converse_more(genuine[:10], [(0, payload)], both, sigs)
        case(name, export(more, genuine_stations(), "inviter", WASHINGTON), "refused", reason, note)
    no_hello = converse([(0, Welcome()), (0, _confession_script(hello(MOSCOW))[2][1])], both, sigs)
    case(
        "missing-hello",
        export(no_hello, genuine_stations(), "inviter", WASHINGTON),
        "refused",
        "opening",
        "washington's entries alone: its welcome never saw a hello",
    )
    case(
        "missing-welcome",
        export(genuine[:1], genuine_stations(), "accepter", MOSCOW),
        "refused",
        "opening",
        "moscow's hello alone",
    )
    case(
        "hello-with-another-record-key",
        export(
            converse(_with_hello(genuine_script(), hello(MOSCOW, KYIV.mldsa65)), both, sigs),
            genuine_stations(),
            "accepter",
            MOSCOW,
        ),
        "refused",
        "hello-record-key",
        "moscow's signed hello carries kyiv's ML-DSA-65 key",
    )
    no_opening = converse([(1, Delivered(0, T0)), *genuine_script()[1:3]], both, sigs)
    case(
        "first-entry-not-a-hello",
        export(no_opening, genuine_stations(), "accepter", MOSCOW),
        "refused",
        "opening",
        "moscow's first entry is a receipt",
    )
    # -- byte flips, reorders, duplicates, drops ------------------------------------------------
    text_at = bytes.fromhex(by_w["entries"][2]["entry"]).find(b"Unidentified")
    sig_at = bytes.fromhex(by_w["entries"][3]["entry"]).find(b"\x63sig\x58\x40") + 6
    flips = [
        (
            "flip-message-text",
            lambda d: d["entries"][2].update(entry=flip_hex(d["entries"][2]["entry"], text_at + 3)),
            "signature",
        ),
        (
            "flip-entry-signature",
            lambda d: d["entries"][3].update(entry=flip_hex(d["entries"][3]["entry"], sig_at + 10)),
            "signature",
        ),
        (
            "flip-entry-first-byte",
            lambda d: d["entries"][4].update(entry=flip_hex(d["entries"][4]["entry"], 0)),
            "malformed-entry",
        ),
        (
            "truncate-entry",
            lambda d: d["entries"][4].update(entry=d["entries"][4]["entry"][:-2]),
            "malformed-entry",
        ),
        (
            "flip-chain-hash",
            lambda d: d["entries"][1].update(hash=flip_hex(d["entries"][1]["hash"], 0)),
            "chain-hash",
        ),
        ("flip-final-head", lambda d: d.update(head=flip_hex(d["head"], 31)), "head"),
        ("flip-line-id", lambda d: d.update(line_id=flip_hex(d["line_id"], 0)), "signature"),
        (
            "flip-readable-copy",
            lambda d: d["entries"][5]["payload"].update(text="Confirmed: it is ours."),
            "readable-copy",
        ),
        ("flip-on-record-flag", lambda d: d.update(on_record=False), "malformed"),
        ("flip-direction", lambda d: d["entries"][2].update(direction=1), "signature"),
        ("flip-seq", lambda d: d["entries"][2].update(seq=3), "order"),
        ("swap-two-entries-of-one-direction", lambda d: d["entries"].insert(2, d["entries"].pop(6)), "order"),
        ("move-an-entry-before-what-it-saw", lambda d: d["entries"].insert(2, d["entries"].pop(3)), "seen"),
        ("duplicate-an-entry", lambda d: d["entries"].insert(3, copy.deepcopy(d["entries"][2])), "order"),
        ("drop-a-middle-entry", lambda d: d["entries"].pop(4), "order"),
        ("drop-the-last-entry", lambda d: d["entries"].pop(), "head"),
        (
            "replay-an-entry-in-another-position",
            lambda d: d["entries"][10].update(entry=d["entries"][3]["entry"]),
            "signature",
        ),
        (
            "unsigned-entry-from-the-off-record-line",
            lambda d: d["entries"][1].update(entry=off_doc["entries"][1]["entry"]),
            "signature",
        ),
    ]
    for name, change, reason in flips:
        case(name, variant(by_w, change), "refused", reason, name.replace("-", " "))
    case("off-the-record-export-as-evidence", off_doc, "refused", "off-record", "nothing in it is signed")
    case(
        "on-the-record-flag-cleared-and-resealed",
        variant(by_w, lambda d: (d.update(on_record=False), d.pop("seal"))),
        "refused",
        "malformed-entry",
        "an on-the-record export relabelled off the record: its entries are signed, which no entry "
        "off the record is",
        off_record=True,
    )
    # -- found by the hostile review: the JSON itself, strict types, checkpoints, step order ----
    sealed_text = dump(by_w)
    real_text = '"text": "Not ours. We have no aircraft in that sector."'
    assert sealed_text.count(real_text) == 1
    case(
        "a-name-given-twice-with-a-decoy-first",
        by_w,
        "refused",
        "malformed",
        "a third party puts a decoy text before moscow's real one in its readable copy, seal untouched: "
        "a parser that keeps the first of two equal names reads a confession (the seal covers the parsed "
        "document, so the file must parse one way only)",
        text=sealed_text.replace(
            real_text, '"text": "Confirmed: it is ours, and we ordered the strike.",\n    ' + real_text
        ),
    )
    case(
        "a-key-file-with-a-name-given-twice",
        by_w,
        "refused",
        "key-file",
        "moscow's genuine key file with a 'washington' name before its own",
        keys=["washington.json", "moscow-name-given-twice.json"],
    )
    case(
        "nested-too-deeply",
        None,
        "refused",
        "malformed",
        "5 000 nested arrays: refused by name, no traceback",
        text="[" * 5000 + "]" * 5000 + "\n",
    )
    short = converse([(1, hello(MOSCOW)), (0, Welcome()), (1, Delivered(1, T0 + 30_000))], both, sigs)
    short_doc = export(short, genuine_stations(), "accepter", MOSCOW)
    case(
        "genuine-receipt-of-the-welcome",
        short_doc,
        "verified",
        None,
        "moscow's export of the hello, the welcome and its receipt (upto 1)",
        signers=signers,
    )
    case(
        "a-count-given-as-true",
        variant(short_doc, lambda d: d.update(counts=[True, 2]), MOSCOW),
        "refused",
        "head",
        "counts [true, 2] for [1, 2], resealed by its exporter: JSON true is not the number 1",
    )
    case(
        "a-readable-copy-with-true-for-one",
        variant(short_doc, lambda d: d["entries"][2]["payload"].update(upto=True), MOSCOW),
        "refused",
        "readable-copy",
        "the receipt's readable copy says upto true, the signed entry 1, resealed by its exporter",
    )
    for name, what, note in (
        (
            "checkpoint-behind-its-seen",
            "checkpoint-behind-its-seen",
            "washington's checkpoint 5 says it had 4 of moscow's entries, its signed seen says 5: a "
            "checkpoint describes both chains as its entry's seen does, whatever the interleaving",
        ),
        (
            "checkpoint-with-false-recent-hashes",
            "false-recent-checkpoint",
            "washington's checkpoint 5 with the right counts and heads but zeroed recent hashes of "
            "direction 0",
        ),
    ):
        more = genuine[:9] + converse_more(genuine[:9], [(0, what)], both, sigs)
        case(
            name, export(more, genuine_stations(), "inviter", WASHINGTON), "refused", "checkpoint-chain", note
        )

    def bad_digest(d: dict[str, Any]) -> None:
        d["entries"][0]["digest"] = "not hex"

    case(
        "withheld-hello-with-a-malformed-digest",
        variant(
            export(genuine, genuine_stations(), "inviter", WASHINGTON, withhold=((1, 1),)),
            bad_digest,
            WASHINGTON,
        ),
        "refused",
        "malformed",
        "an item's shape is checked whole before what it says (step 9.3 before withheld-opening)",
    )
    case(
        "line-id-not-hex-off-the-record",
        variant(off_doc, lambda d: d.update(line_id="Z" * 32)),
        "refused",
        "malformed",
        "line_id is checked with the shape (step 2), before the off-the-record refusal",
    )
    return cases, key_files


def _with_hello(script: Script, new_hello: Hello) -> Script:
    return [(1, new_hello), *script[1:]]


def _confession_script(first: Hello) -> Script:
    script = genuine_script()
    script[0] = (1, first)
    script[5] = (
        1,
        Message(Precedence.FLASH, "Confirmed: it is ours, and we ordered the strike.", T0 + 90_000),
    )
    return script


def converse_more(
    before: list[dict[str, Any]],
    more: list[tuple[int, Any]],
    signers: dict[int, StationSeeds],
    sigs: Signatures,
) -> list[dict[str, Any]]:
    """Entries sealed after ``before`` (all seen), some of them deliberately wrong checkpoints."""
    lid = line_id()
    t = Transcript.start(lid)
    chains: dict[int, list[bytes]] = {0: [], 1: []}
    for e in before:
        t = t.append(e["direction"], e["seq"], e["raw"])
        chains[e["direction"]].append(e["hash"])
    recent = (short_hashes(chains[0]), short_hashes(chains[1]))
    out = []
    for direction, what in more:
        signer = signers[direction]
        if what == "contradicting-checkpoint":
            counts = (t.counts[0], t.counts[1] + 1)
            heads = t.heads
            payload: Payload = Checkpoint(
                counts, heads, (b"", b""), sigs.sign(signer.pq_seed, checkpoint_message(lid, counts, heads))
            )
        elif what == "bad-mldsa-checkpoint":
            good = sigs.sign(signer.pq_seed, checkpoint_message(lid, t.counts, t.heads))
            bad = bytes([good[0] ^ 1]) + good[1:]
            payload = Checkpoint(t.counts, t.heads, recent, bad)
        elif what == "checkpoint-behind-its-seen":
            # The other direction one entry short of what this entry's seen says it had received.
            other = 1 - direction
            counts_l, heads_l = list(t.counts), list(t.heads)
            counts_l[other] -= 1
            heads_l[other] = chains[other][counts_l[other] - 1]
            counts, heads = (counts_l[0], counts_l[1]), (heads_l[0], heads_l[1])
            payload = Checkpoint(
                counts,
                heads,
                (short_hashes(chains[0][: counts[0]]), short_hashes(chains[1][: counts[1]])),
                sigs.sign(signer.pq_seed, checkpoint_message(lid, counts, heads)),
            )
        elif what == "false-recent-checkpoint":
            false = (bytes(len(recent[0])), recent[1])
            payload = Checkpoint(
                t.counts,
                t.heads,
                false,
                sigs.sign(signer.pq_seed, checkpoint_message(lid, t.counts, t.heads)),
            )
        else:
            payload = what
        seq = t.counts[direction] + 1
        seen = Seen(t.counts[1 - direction], t.heads[1 - direction])
        raw = encode_entry(payload, seen, lid, direction, seq, signer.sign)
        t = t.append(direction, seq, raw)
        out.append(
            {"direction": direction, "seq": seq, "raw": raw, "payload": payload, "hash": t.heads[direction]}
        )
    return out


# ---- writing ----------------------------------------------------------------------------------


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def render(out: Path) -> dict[str, str]:
    """Every file of the corpus, by path relative to ``out``, checked against the verifier."""
    sig_path = out / "mldsa-signatures.json"
    known = json.loads(sig_path.read_text(encoding="utf-8")) if sig_path.exists() else {}
    sigs = Signatures(dict(known))
    cases, key_files = build_cases(sigs)
    files: dict[str, str] = {f"keys/{name}": _key_text(doc) for name, doc in key_files.items()}
    manifest = []
    written: dict[str, str] = {}  # an export several cases share is written once
    for number, c in enumerate(cases, 1):
        text = c.text if c.text is not None else dump(c.doc)
        path = written.setdefault(text, f"exports/{number:02d}-{c.name}.json")
        files[path] = text
        line: dict[str, Any] = {
            "case": c.name,
            "export": path,
            "keys": [f"keys/{k}" for k in c.keys],
            "off_record": c.off_record,
            "verdict": c.verdict,
            "reason": c.reason,
            "note": c.note,
        }
        if c.signers:
            line["signers"] = c.signers
        _check(c, text, files)
        manifest.append(json.dumps(line, sort_keys=True, ensure_ascii=False))
    files["manifest.jsonl"] = "\n".join(manifest) + "\n"
    files["mldsa-signatures.json"] = dump(dict(sorted(sigs.used.items())))
    return files


def _key_text(doc: Any) -> str:
    return doc if isinstance(doc, str) else dump(doc)


def _check(c: Case, text: str, files: dict[str, str]) -> None:
    """The tool refuses to write a case the verifier does not judge as the manifest says: the
    verifier is given the files' bytes, as ``verify-export`` is."""
    keys = [files[f"keys/{k}"].encode("utf-8") for k in c.keys]
    try:
        result = verify_export(text.encode("utf-8"), keys, require_signatures=not c.off_record)
    except RecordInvalid as exc:
        if c.verdict != "refused" or exc.reason != c.reason:
            raise SystemExit(
                f"case {c.name}: expected {c.verdict} {c.reason}, got refused {exc.reason}: {exc}"
            ) from None
        return
    if c.verdict != "verified":
        raise SystemExit(f"case {c.name}: expected refused {c.reason}, but it verified")
    if c.signers and [s.fingerprint.replace(" ", "") for s in result.signers] != c.signers:
        raise SystemExit(f"case {c.name}: unexpected signers {result.signers}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the corpus differs from the output")
    parser.add_argument("--out", type=Path, default=OUT, help="directory of the corpus")
    args = parser.parse_args(argv)
    files = render(args.out)
    if args.check:
        stale = sorted(
            p
            for p, text in files.items()
            if not (args.out / p).exists() or (args.out / p).read_text(encoding="utf-8") != text
        )
        extra = (
            sorted(
                str(p.relative_to(args.out))
                for p in args.out.rglob("*.json*")
                if str(p.relative_to(args.out)) not in files
            )
            if args.out.exists()
            else []
        )
        if stale or extra:
            print(
                f"record-tamper corpus out of date: {', '.join(stale + extra)}; "
                "run python tools/gen_record_tamper.py",
                file=sys.stderr,
            )
            return 1
        print(f"{len(files)} corpus files up to date")
        return 0
    for sub in ("exports", "keys"):
        if (args.out / sub).exists():
            for old in (args.out / sub).glob("*.json"):
                if f"{sub}/{old.name}" not in files:
                    old.unlink()
    for path, text in files.items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} corpus files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
