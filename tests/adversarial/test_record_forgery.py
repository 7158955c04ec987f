"""One of the two parties forges the record, holding only its own station's keys (issue 8).

Washington (the inviter) wants the arbiter to read that Moscow confessed. Each attack is built
with the project's own tools (tests/support/record_forgery.py: entries sealed by
``encode_entry``, exports sealed by ``seal_export``, identity files by ``identity_document``)
and judged by the real ``backchannel transcript verify-export`` in a fresh process, which must
refuse it with a message that names the problem, never a traceback.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from support.figures import figure
from support.record_forgery import arbiter, toolkit, write

CONFESSION = "Confirmed: it is ours, and we ordered the strike."


def genuine_keys(directory: Path) -> tuple[Path, Path]:
    t = toolkit()
    return (
        write(directory, "washington.json", t.WASHINGTON.identity_file()),
        write(directory, "moscow.json", t.MOSCOW.identity_file()),
    )


def refused(result: Any, *words: str) -> str:
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    for word in words:
        assert word in message, message
    return message


def test_one_key_signing_both_directions_is_refused_by_name(tmp_path: Path) -> None:
    t = toolkit()
    sigs = t.Signatures({})
    script = t._confession_script(t.hello(t.WASHINGTON, t.WASHINGTON.mldsa65))
    entries = t.converse(script, {0: t.WASHINGTON, 1: t.WASHINGTON}, sigs)  # washington signs both sides
    w, m = genuine_keys(tmp_path)
    refusals = 0
    # As in the issue: moscow's side written and signed by washington, with washington's keys in
    # both roles of the export, and both genuine key files given.
    stations = {"inviter": t.WASHINGTON.block(), "accepter": t.WASHINGTON.block("moscow")}
    forged = write(tmp_path, "forged.json", t.export(entries, stations, "inviter", t.WASHINGTON))
    assert CONFESSION in forged.read_text()
    refused(arbiter(tmp_path, forged, w, m), "same station as inviter and accepter", "forgery")
    refusals += 1
    # The same forgery claiming moscow's real keys for moscow's side: the hello does not verify.
    honest_blocks = write(
        tmp_path, "forged2.json", t.export(entries, t.genuine_stations(), "inviter", t.WASHINGTON)
    )
    refused(
        arbiter(tmp_path, honest_blocks, w, m),
        "entry 1 of direction 1",
        "does not verify under the accepter's key ('moscow')",
    )
    refusals += 1
    # And the key files cannot be bent to it: washington's file twice is refused before anything.
    refused(arbiter(tmp_path, forged, w, w), "both key files are the same station")
    refusals += 1
    figure("one-key forgeries refused", refusals, "of 3")


def test_a_genuine_entry_relabelled_withheld_with_new_text_is_refused(tmp_path: Path) -> None:
    t = toolkit()
    genuine = t.converse(t.genuine_script(), {0: t.WASHINGTON, 1: t.MOSCOW}, t.Signatures({}))
    doc = t.export(genuine, t.genuine_stations(), "inviter", t.WASHINGTON)
    w, m = genuine_keys(tmp_path)
    assert arbiter(tmp_path, write(tmp_path, "genuine.json", doc), w, m).returncode == 0
    item = doc["entries"][5]  # moscow's signed message "Not ours..."
    assert item["payload"]["text"].startswith("Not ours")
    # The old "spent": true, and its successor done wrong: a withheld body with text beside it.
    item.update(withheld=True, digest=t.sha256(bytes.fromhex(item.pop("entry"))).hex())
    item["payload"]["text"] = CONFESSION
    doc.pop("seal")
    t.seal_export(doc, t.WASHINGTON.sign)  # washington re-seals its own export: that is allowed
    message = refused(
        arbiter(tmp_path, write(tmp_path, "relabelled.json", doc), w, m),
        "entry 4 of direction 1",
        "marked withheld but carries",
    )
    # Withheld honestly (no text) it verifies, and the arbiter is told it was withheld.
    del item["payload"]
    doc.pop("seal")
    t.seal_export(doc, t.WASHINGTON.sign)
    ok = arbiter(tmp_path, write(tmp_path, "withheld.json", doc), w, m, as_json=True)
    assert ok.returncode == 0, ok.stdout
    out = json.loads(ok.stdout)
    assert out["withheld"] == ["entry 4 of direction 1 (item 6)"] and CONFESSION not in ok.stdout
    figure("withheld relabelling refused", 1 if "withheld" in message else 0, "of 1")


def test_the_other_party_cannot_reseal_an_export_that_claims_to_be_the_peers(tmp_path: Path) -> None:
    t = toolkit()
    genuine = t.converse(t.genuine_script(), {0: t.WASHINGTON, 1: t.MOSCOW}, t.Signatures({}))
    by_moscow = t.export(genuine, t.genuine_stations(), "accepter", t.MOSCOW)
    w, m = genuine_keys(tmp_path)
    assert arbiter(tmp_path, write(tmp_path, "moscow-export.json", by_moscow), w, m).returncode == 0
    doc = copy.deepcopy(by_moscow)
    for item in doc["entries"]:  # washington moves every recorded time by an hour...
        item["recorded_at"] += 3_600_000
    doc["exported_at"] -= 86_400_000
    doc.pop("seal")
    t.seal_export(doc, t.WASHINGTON.sign)  # ...and seals it with its own key
    refused(
        arbiter(tmp_path, write(tmp_path, "resealed.json", doc), w, m),
        "the seal does not verify under the key of the accepter ('moscow')",
        "sealed by another station",
    )
    # Nor can it drop the seal, or keep moscow's seal over the moved times.
    doc.pop("seal")
    refused(arbiter(tmp_path, write(tmp_path, "unsealed.json", doc), w, m), "has no seal")
    doc["seal"] = by_moscow["seal"]
    refused(arbiter(tmp_path, write(tmp_path, "moved.json", doc), w, m), "the seal does not verify")
    figure("re-sealings refused", 3, "of 3")


def test_a_forged_key_file_with_the_real_name_and_fingerprint_is_refused(tmp_path: Path) -> None:
    t = toolkit()
    genuine = t.converse(t.genuine_script(), {0: t.WASHINGTON, 1: t.MOSCOW}, t.Signatures({}))
    export = write(tmp_path, "export.json", t.export(genuine, t.genuine_stations(), "inviter", t.WASHINGTON))
    w, m = genuine_keys(tmp_path)
    real = t.MOSCOW.identity_file()
    forged = dict(t.IMPOSTOR.identity_file(), name=real["name"], fingerprint=real["fingerprint"])
    refusals = 0
    refused(
        arbiter(tmp_path, export, w, write(tmp_path, "moscow-forged.json", forged)),
        "key file 2 ('moscow') is forged or damaged",
        "its fingerprint is not the one its keys give",
    )
    refusals += 1
    # The old key file (two keys, one of them fingerprinted without being there) is refused too.
    old = {k: real[k] for k in ("name", "ed25519", "mldsa65", "fingerprint")}
    refused(
        arbiter(tmp_path, export, w, write(tmp_path, "moscow-old.json", old)),
        "is not a backchannel-identity/1",
    )
    refusals += 1
    # A self-consistent file for a new key passes as a file, but then the export (signed by
    # moscow) names no station of the files, and washington's own forgery under that key shows
    # a fingerprint that differs from moscow's half of the safety number.
    impostor = write(tmp_path, "moscow-impostor.json", t.IMPOSTOR.identity_file())
    refused(arbiter(tmp_path, export, w, impostor), "none of the key files is the accepter's")
    refusals += 1
    ok = arbiter(tmp_path, export, m, w, as_json=True)  # the genuine files, in the other order
    assert ok.returncode == 0
    signers = json.loads(ok.stdout)["signers"]
    assert [s["name"] for s in signers] == ["washington", "moscow"]
    assert signers[1]["fingerprint"] == " ".join(real["fingerprint"][i : i + 5] for i in range(0, 30, 5))
    figure("forged key files refused", refusals, "of 3")
