"""A future quantum adversary forges Ed25519 and rewrites a record a checkpoint covers (§6).

Simulated by handing the forger *every* Ed25519 key of both stations (what breaking Ed25519
gives) and no ML-DSA-65 seed. It rewrites Washington's first message, re-signs every entry
of both directions and the export's seal with valid Ed25519 signatures, and recomputes the
chains. The checkpoints (ML-DSA-65 over both chain heads) are what it cannot redo: it keeps
them as signed (heads that contradict the new chain) or points them at the new heads with
the old signature. The real ``verify-export``, run as an arbiter, refuses both. The guard:
the same forger, changing only an entry *after* every checkpoint, passes (THREAT_MODEL §6
"Can": the record rests on Ed25519 alone past the last checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from backchannel.proto.payloads import Checkpoint, Message
from backchannel.proto.record import Seen, encode_entry
from backchannel.proto.transcript import Transcript

from support.figures import figure
from support.record_forgery import arbiter, toolkit, write

FORGED_TEXT = "Yes, they are ours. We ordered the overflight."


def forge(changed: int, new_text: str, retarget_checkpoints: bool) -> list[dict[str, Any]]:
    """The genuine conversation with entry ``changed`` rewritten, every entry re-signed with
    the stations' Ed25519 keys; checkpoints keep their genuine ML-DSA-65 signatures."""
    t = toolkit()
    script = t.genuine_script()
    genuine = t.converse(script, {0: t.WASHINGTON, 1: t.MOSCOW}, t.Signatures({}))
    direction, old = script[changed]
    assert isinstance(old, Message)
    script[changed] = (direction, dataclasses.replace(old, text=new_text))
    signers = {0: t.WASHINGTON, 1: t.MOSCOW}
    line = t.line_id()
    tr = Transcript.start(line)
    chains: dict[int, list[bytes]] = {0: [], 1: []}
    out = []
    for (d, maybe), real in zip(script, genuine, strict=True):
        payload = maybe
        if maybe is None:  # a checkpoint: its ML-DSA-65 signature cannot be made anew
            kept = real["payload"]
            assert isinstance(kept, Checkpoint)
            recent = (t.short_hashes(chains[0]), t.short_hashes(chains[1]))
            retargeted = Checkpoint(tr.counts, tr.heads, recent, kept.pq_signature)
            payload = retargeted if retarget_checkpoints else kept
        seq = tr.counts[d] + 1
        raw = encode_entry(payload, Seen(tr.counts[1 - d], tr.heads[1 - d]), line, d, seq, signers[d].sign)
        tr = tr.append(d, seq, raw)
        chains[d].append(tr.heads[d])
        out.append({"direction": d, "seq": seq, "raw": raw, "payload": payload, "hash": tr.heads[d]})
    return out


def verdict(tmp_path: Path, name: str, entries: list[dict[str, Any]]) -> tuple[int, str]:
    t = toolkit()
    doc = t.export(entries, t.genuine_stations(), "inviter", t.WASHINGTON)  # sealed with Ed25519
    w = write(tmp_path, "washington.json", t.WASHINGTON.identity_file())
    m = write(tmp_path, "moscow.json", t.MOSCOW.identity_file())
    result = arbiter(tmp_path, write(tmp_path, name, doc), w, m)
    assert "Traceback" not in result.stderr
    return result.returncode, " ".join((result.stderr + result.stdout).split())


def test_with_ed25519_broken_an_entry_a_checkpoint_covers_cannot_be_changed(tmp_path: Path) -> None:
    t = toolkit()
    script = t.genuine_script()
    first = next(i for i, (d, p) in enumerate(script) if d == 0 and isinstance(p, Message))
    last = max(i for i, (d, p) in enumerate(script) if d == 0 and isinstance(p, Message))
    assert first < script.index((0, None)) < last  # the first is covered, the last comes after

    refusals = []
    for retarget in (False, True):
        code, message = verdict(tmp_path, f"forged-{retarget}.json", forge(first, FORGED_TEXT, retarget))
        assert code == 1, message
        assert "checkpoint" in message, message
        refusals.append(message)
        print(message)
    # The guard: the same forger, past the last checkpoint that covers it, is believed.
    uncovered = next(i for i in range(last + 1, len(script)) if script[i] == (1, None))
    code, message = verdict(tmp_path, "after.json", forge(last, FORGED_TEXT, True)[:uncovered])
    figure("Ed25519-valid rewrites of a checkpointed entry refused", len(refusals), "of 2")
    figure("Ed25519-valid rewrite after the last checkpoint accepted (the documented limit)", int(code == 0))
    assert code == 0, message
    assert json.dumps(FORGED_TEXT)[1:-1] in (tmp_path / "after.json").read_text()
