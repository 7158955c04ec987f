"""The spec alone suffices: a verifier written only from PROTOCOL §11.4–§11.5 agrees with the corpus.

spec_verifier.py was written from docs/PROTOCOL.md without reading the project's implementation of the
record. Every case of docs/vectors/record-tamper/manifest.jsonl must get the manifest's verdict and,
when refused, the manifest's first error reason; a verified case must name the manifest's signers.
A disagreement here means the spec text and the project's behaviour have drifted apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from spec_verifier import verify, verify_report

CORPUS = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "record-tamper"
CASES: list[dict[str, Any]] = [
    json.loads(line) for line in (CORPUS / "manifest.jsonl").read_text().splitlines() if line.strip()
]


def test_the_corpus_is_all_there() -> None:
    assert len(CASES) >= 80
    assert len({c["case"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_spec_verifier_agrees_with_the_manifest(case: dict[str, Any]) -> None:
    export = (CORPUS / case["export"]).read_bytes()
    keys = [(CORPUS / k).read_bytes() for k in case["keys"]]
    verdict, reason = verify(export, keys, off_record=case["off_record"])
    assert (verdict, reason) == (case["verdict"], case["reason"]), case["note"]
    if verdict == "verified":
        assert verify_report(export, keys, off_record=case["off_record"]).signers == case["signers"]
