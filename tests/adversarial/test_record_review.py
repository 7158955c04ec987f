"""A hostile review of the arbiter's procedure: what a third party or one party can do to an
export *without* breaking a signature (issue 8, review).

The seal and the identity self-signature cover the parsed document, so the attacks here
target the parsing and the comparisons around the signatures: a JSON name given twice with a
decoy first (the seal untouched), JSON ``true`` passed off as the number 1, and a checkpoint
whose post-quantum signature claims another view of the chain than its Ed25519-signed
``seen``. Each forgery is built with the project's own tools (tests/support/record_forgery.py)
and judged by the real ``backchannel transcript verify-export`` in a fresh process.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.figures import figure
from support.record_forgery import arbiter, toolkit, write

CONFESSION = "Confirmed: it is ours, and we ordered the strike."
REAL = "Not ours. We have no aircraft in that sector."


def test_a_decoy_before_a_sealed_value_is_refused_not_read_two_ways(tmp_path: Path) -> None:
    t = toolkit()
    sigs = t.Signatures({})
    genuine = t.converse(t.genuine_script(), {0: t.WASHINGTON, 1: t.MOSCOW}, sigs)
    export = t.export(genuine, t.genuine_stations(), "inviter", t.WASHINGTON)
    w = write(tmp_path, "washington.json", t.WASHINGTON.identity_file())
    m = write(tmp_path, "moscow.json", t.MOSCOW.identity_file())
    text = t.dump(export)
    # A third party (no key at all) adds a decoy text before moscow's real one: the parsed
    # document Python keeps (the last value) is the sealed one, so the seal still verifies.
    forged_text = text.replace(f'"text": "{REAL}"', f'"text": "{CONFESSION}", "text": "{REAL}"', 1)
    assert forged_text != text and json.loads(forged_text) == json.loads(text)
    forged = tmp_path / "decoy.json"
    forged.write_text(forged_text, encoding="utf-8")
    result = arbiter(tmp_path, forged, w, m, as_json=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["reason"] == "malformed" and "'text' more than once" in error["message"], error
    refusals = 1
    # The same trick on a key file: refused as a key file, whichever name comes first.
    key_text = m.read_text().replace('"name": "moscow"', '"name": "washington", "name": "moscow"', 1)
    bent = tmp_path / "moscow-bent.json"
    bent.write_text(key_text, encoding="utf-8")
    result = arbiter(tmp_path, write(tmp_path, "genuine.json", export), w, bent)
    assert result.returncode == 1 and "key file 2 is not valid JSON" in result.stderr, result.stderr
    refusals += 1
    # The genuine file, for contrast, verifies.
    assert arbiter(tmp_path, write(tmp_path, "genuine.json", export), w, m).returncode == 0
    figure("decoy JSON names refused", refusals, "of 2")


def test_a_checkpoint_must_describe_what_its_seen_says(tmp_path: Path) -> None:
    """Washington signs (ML-DSA-65) a checkpoint claiming one entry of moscow's fewer than its
    Ed25519-signed ``seen``; the old check accepted it because moscow's entries before it in the
    export covered the claim, so the verdict hung on the interleaving the exporter chose."""
    t = toolkit()
    sigs = t.Signatures({})
    both = {0: t.WASHINGTON, 1: t.MOSCOW}
    before = t.converse(t.genuine_script(), both, sigs)[:9]
    w = write(tmp_path, "washington.json", t.WASHINGTON.identity_file())
    m = write(tmp_path, "moscow.json", t.MOSCOW.identity_file())
    refusals = 0
    for what in ("checkpoint-behind-its-seen", "false-recent-checkpoint"):
        entries = before + t.converse_more(before, [(0, what)], both, sigs)
        doc = t.export(entries, t.genuine_stations(), "inviter", t.WASHINGTON)
        result = arbiter(tmp_path, write(tmp_path, f"{what}.json", doc), w, m, as_json=True)
        assert result.returncode == 1, result.stdout
        error = json.loads(result.stdout)["error"]
        assert error["reason"] == "checkpoint-chain" and "entry 5 of direction 0" in error["message"]
        refusals += 1
    figure("checkpoints contradicting their seen refused", refusals, "of 2")
