"""The record: signed entries and checkpoints, exports verified with only the public keys,
off-the-record lines that prove nothing, and a divergence named by its first entry."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backchannel.proto.record import decode_entry

from support.faultproxy import FaultProxy
from support.relays import start_relay
from support.stations import StationProcess, heads_equal, wait_until


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {"stations": [], "relays": [], "proxies": []}
    yield started
    for st in started["stations"]:
        st.stop()
    for proxy in started["proxies"]:
        proxy.stop()
    for relay in started["relays"]:
        relay.stop()


def stations(tmp_path: Path, world: dict[str, Any]) -> tuple[StationProcess, StationProcess]:
    a, b = StationProcess(tmp_path, "washington"), StationProcess(tmp_path, "moscow")
    for st in (a, b):
        st.start()
        world["stations"].append(st)
    return a, b


def pair(a: StationProcess, b: StationProcess, url: str, *extra: str) -> None:
    out = a.cli("invite", "--relay", url, "--name", "moscow", "--json", *extra)
    assert out.returncode == 0, out.stderr
    b.call("accept", text=json.loads(out.stdout)["text"], name="washington")
    wait_until("the line", lambda: b.call("line", name="washington")["state"] == "established")


def converse(a: StationProcess, b: StationProcess) -> None:
    sent = a.call(
        "send", line="moscow", text="Confirm the 14:02 track.", precedence="FLASH", wait="delivered"
    )
    b.call("ack", line="washington", seq=sent["seq"], operator="ivanova")
    b.call("send", line="washington", text="Confirmed. Not ours.", wait="delivered")
    wait_until(
        "the acknowledgement",
        lambda: (
            a.call("message", line="moscow", seq=sent["seq"], direction="out")["status"] == "acknowledged"
        ),
    )


def agreed_checkpoints(st: StationProcess, line: str) -> int:
    record = st.call("verify_transcript", line=line)
    return int(record["checkpoints_received"]) - len(record["diverged"])


def standalone(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI on a machine that never saw the line: no station, no home, no passphrase."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env["BACKCHANNEL_HOME"] = str(cwd / "nowhere")
    return subprocess.run(
        [sys.executable, "-m", "backchannel", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_an_on_the_record_export_verifies_with_only_the_two_public_keys_and_any_flip_fails(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relay = start_relay(tmp_path)
    world["relays"].append(relay)
    a, b = stations(tmp_path, world)
    pair(a, b, relay.url)
    converse(a, b)
    assert a.cli("transcript", "checkpoint", "moscow").returncode == 0
    assert b.cli("transcript", "checkpoint", "washington").returncode == 0
    wait_until(
        "checkpoints agreed on both sides",
        lambda: agreed_checkpoints(a, "moscow") >= 1 and agreed_checkpoints(b, "washington") >= 1,
    )
    verify = json.loads(a.cli("transcript", "verify", "moscow", "--json").stdout)
    assert verify["on_record"] and not verify["diverged"] and verify["last_checkpoint"]["status"] == "agreed"

    export, report = tmp_path / "export.json", tmp_path / "report.html"
    assert a.cli("transcript", "export", "moscow", "--out", str(export)).returncode == 0
    assert a.cli("transcript", "export", "moscow", "--format", "html", "--out", str(report)).returncode == 0
    keys = []
    for st in (a, b):
        path = tmp_path / f"{st.name}.keys.json"
        path.write_text(st.cli("identity", "--json").stdout)
        keys += ["--keys", str(path)]
    third_party = tmp_path / "arbiter"
    third_party.mkdir()
    ok = standalone("transcript", "verify-export", str(export), *keys, "--json", cwd=third_party)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["verified"] is True

    doc = json.loads(export.read_text())
    html = report.read_text()
    assert (
        "Confirm the 14:02 track." in html and "ON THE RECORD" in html and "acknowledged by ivanova" in html
    )
    # Flip one byte of an entry in the middle: verification must fail and name that entry.
    victim = len(doc["entries"]) // 2
    raw = bytearray(bytes.fromhex(doc["entries"][victim]["entry"]))
    raw[len(raw) // 2] ^= 0x01
    doc["entries"][victim]["entry"] = raw.hex()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    bad = standalone("transcript", "verify-export", str(tampered), *keys, cwd=third_party)
    entry = doc["entries"][victim]
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"entry {entry['seq']} of direction {entry['direction']}" in bad.stderr

    # Bytes no signature covers are sealed by the exporting station: changing them fails too.
    for field, change in (("payload", "text"), ("recorded_at", None)):
        doc = json.loads(export.read_text())
        item = next(e for e in doc["entries"] if e.get("payload", {}).get("t") == "msg")
        if field == "payload":
            item["payload"]["text"] = "We never said that."
        else:
            item["recorded_at"] += 3_600_000
        tampered.write_text(json.dumps(doc))
        bad = standalone("transcript", "verify-export", str(tampered), *keys, cwd=third_party)
        assert bad.returncode == 1, field
        expected = f"entry {item['seq']} of direction {item['direction']}" if change else "seal"
        assert expected in bad.stderr, (field, bad.stderr)


def test_an_off_the_record_export_carries_no_verifiable_signature(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relay = start_relay(tmp_path)
    world["relays"].append(relay)
    a, b = stations(tmp_path, world)
    pair(a, b, relay.url, "--off-record")
    converse(a, b)
    assert b.call("line", name="washington")["on_record"] is False
    export = tmp_path / "export.json"
    assert a.cli("transcript", "export", "moscow", "--out", str(export)).returncode == 0
    keys = []
    for st in (a, b):
        path = tmp_path / f"{st.name}.keys.json"
        path.write_text(st.cli("identity", "--json").stdout)
        keys += ["--keys", str(path)]
    result = standalone("transcript", "verify-export", str(export), *keys, cwd=tmp_path)
    assert result.returncode == 1 and "off the record" in result.stderr
    doc = json.loads(export.read_text())
    # Nothing is signed: every entry decodes as an off-the-record entry (one with a "sig" is refused).
    line_id = bytes.fromhex(doc["line_id"])
    entries = [e for e in doc["entries"] if "entry" in e]
    assert len(entries) >= 4
    for e in entries:
        entry = decode_entry(bytes.fromhex(e["entry"]), line_id, e["direction"], e["seq"], None)
        assert entry.signature == b""
    # Consistency can still be checked, but the export says it proves nothing to others.
    loose = standalone("transcript", "verify-export", str(export), *keys, "--off-record", cwd=tmp_path)
    assert loose.returncode == 0 and "no signatures" in loose.stdout


def test_a_hostile_relay_that_drops_duplicates_and_reorders_cannot_split_the_record(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relay = start_relay(tmp_path, config={"redeliver_seconds": 1.0})
    world["relays"].append(relay)
    seed = int.from_bytes(os.urandom(4))
    print(f"fault seed {seed}")
    proxy = FaultProxy(relay.port, {}, seed=seed)
    proxy.start()
    world["proxies"].append(proxy)
    a, b = StationProcess(tmp_path, "washington"), StationProcess(tmp_path, "moscow")
    for st in (a, b):
        (st.home / "station.toml").write_text("[station]\nrelay_request_timeout = 1.0\n")
        st.start()
        world["stations"].append(st)
    pair(a, b, proxy.url)
    proxy.set_faults({"drop": 0.1, "duplicate": 0.2, "reorder": 0.2})  # the relay turns hostile
    for i in range(40):
        a.call("send", line="moscow", text=f"under attack {i}")
    wait_until(
        "delivery through the hostile relay",
        lambda: b.call("line", name="washington")["received"] == 40,
        timeout=90,
    )
    proxy.set_faults({})
    a.call("checkpoint", line="moscow")
    b.call("checkpoint", line="washington")
    wait_until(
        "agreeing checkpoints",
        lambda: agreed_checkpoints(a, "moscow") >= 1 and agreed_checkpoints(b, "washington") >= 1,
        timeout=30,
    )
    assert proxy.counters["dropped"] > 0 and proxy.counters["duplicated"] > 0
    assert [m["text"] for m in reversed(b.call("inbox", limit=100))] == [
        f"under attack {i}" for i in range(40)
    ]
    for st in (a, b):
        assert not [x for x in st.call("alarms") if x["kind"] == "record_divergence"]
    wait_until("equal transcripts", lambda: heads_equal(a, "moscow", b, "washington"))


def test_a_split_record_is_named_by_its_first_divergent_entry(tmp_path: Path, world: dict[str, Any]) -> None:
    relay = start_relay(tmp_path)
    world["relays"].append(relay)
    a, b = stations(tmp_path, world)
    pair(a, b, relay.url)
    converse(a, b)
    a.call("send", line="moscow", text="the entry that will differ", wait="delivered")
    wait_until("quiet", lambda: heads_equal(a, "moscow", b, "washington"))
    # Moscow's record of Washington's last entry is altered on disk (a corrupt or lying record).
    b.stop()
    with sqlite3.connect(b.home / "station.db") as db:
        line_id, count0 = db.execute("SELECT line_id, tx_count0 FROM lines").fetchone()
        forged = bytes(32)
        db.execute(
            "UPDATE entries SET hash = ? WHERE line_id = ? AND direction = 0 AND seq = ?",
            (forged, line_id, count0),
        )
        db.execute("UPDATE lines SET tx_head0 = ?", (forged,))
    b.start()
    a.call("checkpoint", line="moscow")
    alarm = wait_until(
        "the divergence alarm at moscow",
        lambda: next((x for x in b.call("alarms") if x["kind"] == "record_divergence"), None),
        timeout=30,
    )
    assert alarm["subject"] == f"0:{count0}"
    assert f"entry {count0} of direction 0" in alarm["message"]
