"""The record-tamper corpus: `verify-export` judges every case as its manifest line says.

docs/vectors/record-tamper/ is made by tools/gen_record_tamper.py from fixed seeds: genuine
exports and exports tampered the ways a relay, a third party or one of the two parties would
(one key signing both directions, forged and swapped key files, a withheld body with new
text, a re-sealing by the other party, a cut tail, contradicting checkpoints, bad receipts
and acknowledgements, a missing hello, byte flips, reorders, duplicates, drops). Each case is
run through the real `backchannel transcript verify-export --json` command, and the verdict
and the first error (``reason``, PROTOCOL §11.5) must be those of the manifest; a verified
case must name the signers' fingerprints the manifest gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from backchannel.cli.main import cli

from support.figures import figure

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "docs" / "vectors" / "record-tamper"
MANIFEST = [json.loads(line) for line in (CORPUS / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
MUST_COVER = {
    "one-key-signs-both-directions": "same-station",
    "same-key-file-twice": "same-key-file",
    "stations-swapped-in-the-export": "signature",
    "genuine-key-files-in-the-other-order": None,
    "forged-key-file-with-the-real-name-and-fingerprint": "key-file-fingerprint",
    "withheld-relabelling-with-new-text": "withheld-text",
    "resealed-by-the-other-party": "seal",
    "tail-cut-head-recomputed-not-resealed": "seal",
    "inserted-checkpoint-contradicting-the-chain": "checkpoint-chain",
    "ack-of-a-missing-entry": "ack",
    "receipt-beyond-seen": "receipt",
    "missing-hello": "opening",
    "flip-message-text": "signature",
    "swap-two-entries-of-one-direction": "order",
    "duplicate-an-entry": "order",
    "drop-a-middle-entry": "order",
}


def run_verify(case: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    args = ["transcript", "verify-export", str(CORPUS / case["export"]), "--json"]
    for key in case["keys"]:
        args += ["--keys", str(CORPUS / key)]
    if case["off_record"]:
        args.append("--off-record")
    result = CliRunner().invoke(cli, args, catch_exceptions=False, standalone_mode=False)
    return result.exit_code or 0, json.loads(result.stdout)


def test_the_corpus_is_large_enough_and_covers_the_cases_the_issue_names() -> None:
    names = {c["case"]: c for c in MANIFEST}
    assert len(MANIFEST) >= 40
    for name, reason in MUST_COVER.items():
        assert names[name]["reason"] == reason, name
    assert {c["verdict"] for c in MANIFEST} == {"verified", "refused"}
    figure("record-tamper cases", len(MANIFEST), "cases")
    figure("record-tamper cases refused", sum(c["verdict"] == "refused" for c in MANIFEST), "cases")


@pytest.mark.parametrize("case", MANIFEST, ids=[c["case"] for c in MANIFEST])
def test_verify_export_gives_the_manifests_verdict_and_first_error(case: dict[str, Any]) -> None:
    code, out = run_verify(case)
    if case["verdict"] == "verified":
        assert code == 0 and out["verified"] is True, out
        fingerprints = [s["fingerprint"].replace(" ", "") for s in out["signers"]]
        assert fingerprints == case["signers"]
    else:
        assert code == 1 and out["verified"] is False, out
        assert out["error"]["reason"] == case["reason"], out["error"]


def test_the_tool_regenerates_the_corpus_byte_for_byte() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_record_tamper.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
