"""An arbiter given a real record and the two real identity files (issue 8).

Two real stations talk through a real relay on the record, exchange checkpoints, and Moscow
exports the line, once whole and once with one of Washington's messages withheld. The arbiter
runs the real ``verify-export`` in a fresh process: it must verify with the key files in
either order, print for each direction the signer's name and fingerprint grouped exactly as
that station's half of the safety number the operators read aloud, refuse the same file given
twice and a key file whose keys were swapped for a third station's, and name the withheld
entry without showing its text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.figures import figure
from support.record_forgery import arbiter, write
from support.relays import start_relay
from support.stations import StationProcess, pair, wait_until


@pytest.fixture
def line(tmp_path: Path) -> Iterator[dict[str, Any]]:
    relay = start_relay(tmp_path)
    started = [StationProcess(tmp_path, "washington"), StationProcess(tmp_path, "moscow")]
    try:
        for st in started:
            st.start()
        w, m = started
        w_line, m_line = pair(w, m, relay.url, "moscow")
        yield {"w": w, "m": m, "w_line": w_line, "m_line": m_line}
    finally:
        for st in started:
            st.stop()
        relay.stop()


def test_the_arbiter_reads_the_safety_number_halves_and_refuses_bent_key_files(
    tmp_path: Path, line: dict[str, Any]
) -> None:
    w, m = line["w"], line["m"]
    secret = "Strictly between us: the exercise starts at 03:00."
    sent = w.call("send", line=line["w_line"], text=secret, wait="delivered")
    m.call("send", line=line["m_line"], text="Noted.", wait="delivered")
    for st, name in ((w, line["w_line"]), (m, line["m_line"])):
        assert st.cli("transcript", "checkpoint", name).returncode == 0
    wait_until(
        "washington's checkpoint at moscow",
        lambda: m.call("verify_transcript", line=line["m_line"])["checkpoints_received"] >= 1,
    )
    export = tmp_path / "export.json"
    assert m.cli("transcript", "export", line["m_line"], "--out", str(export)).returncode == 0
    keys = {}
    for st in (w, m):
        out = st.cli("identity", "--json")
        assert out.returncode == 0, out.stderr
        keys[st.name] = write(tmp_path, f"{st.name}.json", json.loads(out.stdout))
    number = w.call("verify", line=line["w_line"])
    halves = {number["grouped"][:35], number["grouped"][36:]}

    for order in ((keys["washington"], keys["moscow"]), (keys["moscow"], keys["washington"])):
        ok = arbiter(tmp_path, export, *order, as_json=True)
        assert ok.returncode == 0, ok.stdout
        signers = json.loads(ok.stdout)["signers"]
        assert [s["name"] for s in signers] == ["washington", "moscow"]
        assert {s["fingerprint"] for s in signers} == halves  # what the operators read to each other
    human = arbiter(tmp_path, export, keys["washington"], keys["moscow"])
    assert "direction 0 (inviter) signed by washington" in human.stdout
    assert all(half in human.stdout for half in halves)

    refusals = 0
    twice = arbiter(tmp_path, export, keys["moscow"], keys["moscow"])
    assert twice.returncode == 1 and "both key files are the same station" in twice.stderr
    refusals += 1
    # Moscow's file with Washington's Ed25519 key put in: its fingerprint no longer matches.
    bent = json.loads(keys["moscow"].read_text())
    bent["ed25519"] = json.loads(keys["washington"].read_text())["ed25519"]
    result = arbiter(tmp_path, export, keys["washington"], write(tmp_path, "bent.json", bent))
    assert result.returncode == 1 and "forged or damaged" in result.stderr, result.stderr
    refusals += 1

    # Washington's message withheld by moscow: verified, named, its text nowhere in the export.
    withheld = tmp_path / "withheld.json"
    spec = f"0:{sent['seq']}"
    done = m.cli("transcript", "export", line["m_line"], "--out", str(withheld), "--withhold", spec)
    assert done.returncode == 0, done.stderr
    assert secret not in withheld.read_text()
    ok = arbiter(tmp_path, withheld, keys["washington"], keys["moscow"], as_json=True)
    assert ok.returncode == 0, ok.stdout
    assert [w_.split(" (item")[0] for w_ in json.loads(ok.stdout)["withheld"]] == [
        f"entry {sent['seq']} of direction 0"
    ]
    figure("bent key files refused", refusals, "of 2")
