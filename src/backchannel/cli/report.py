"""The printable HTML report of an exported transcript: for the archive and for people.

Self-contained (no external resources), readable on paper: every message with its time,
precedence, receipts and acknowledging operator; the checkpoints in the chain; the entries
whose body the exporter withheld;
the stations' key fingerprints; and, prominently, whether the line was on the record.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from backchannel.proto.safety import grouped

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.5em; } table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { border: 1px solid #999; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #eee; }
.mono { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.FLASH { color: #b00; font-weight: bold; } .IMMEDIATE { color: #a60; font-weight: bold; }
.banner { padding: .6em 1em; border: 2px solid; margin: 1em 0; font-weight: bold; }
.on { border-color: #070; color: #070; } .off { border-color: #a60; color: #a60; }
.agreed { color: #070; } .diverged { color: #b00; font-weight: bold; }
"""


def _when(ms_or_s: float | None, millis: bool = False) -> str:
    if ms_or_s is None:
        return "-"
    seconds = ms_or_s / 1000 if millis else ms_or_s
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def html_report(doc: dict[str, Any]) -> str:
    stations = doc["stations"]
    sender = {0: stations["inviter"]["name"], 1: stations["accepter"]["name"]}
    messages: dict[tuple[int, int], dict[str, Any]] = {}
    receipts: dict[tuple[int, int], list[str]] = {}
    delivered_upto: dict[int, list[tuple[int, float]]] = {0: [], 1: []}
    withheld: list[str] = []
    checkpoint_rows: list[str] = []
    for entry in doc["entries"]:
        d, seq = entry["direction"], entry["seq"]
        if entry.get("withheld"):
            withheld.append(f"{escape(sender[d])} #{seq}")
            continue
        payload = entry["payload"]
        kind = payload.get("t")
        if kind == "checkpoint":
            checkpoint_rows.append(
                f"<tr><td>{escape(sender[d])} #{seq}</td><td>{payload['n'][0]} / {payload['n'][1]}</td>"
                f"<td class='mono'>{escape(payload['h'][0][:32])}… / {escape(payload['h'][1][:32])}…</td>"
                f"<td>{_when(entry['recorded_at'], millis=True)}</td></tr>"
            )
        if kind == "msg":
            messages[(d, seq)] = payload
        elif kind == "ack":
            receipts.setdefault((1 - d, payload["seq"]), []).append(
                f"acknowledged by {escape(payload['op'])} at {_when(payload['at'], millis=True)}"
            )
        elif kind == "delivered":
            delivered_upto[1 - d].append((payload["upto"], payload["at"]))
    rows = []
    for (d, seq), payload in messages.items():
        delivered = next((at for upto, at in delivered_upto[d] if upto >= seq), None)
        status = (
            [f"delivered at {_when(delivered, millis=True)}"] if delivered else ["not confirmed delivered"]
        )
        status += receipts.get((d, seq), [])
        rows.append(
            f"<tr><td>{escape(sender[d])} #{seq}</td><td>{_when(payload['at'], millis=True)}</td>"
            f"<td class='{escape(payload['p'])}'>{escape(payload['p'])}</td>"
            f"<td>{escape(payload['text'])}</td><td>{'<br>'.join(status)}</td></tr>"
        )
    checkpoints = "".join(checkpoint_rows)
    withheld_note = (
        f"<p>Body withheld by the exporter (digest only, no text): {', '.join(withheld)}.</p>"
        if withheld
        else ""
    )
    record = (
        "<div class='banner on'>ON THE RECORD: every entry is signed (Ed25519) and checkpoints are signed "
        "with ML-DSA-65; anyone holding the two public keys below can verify the JSON export with "
        "<code>backchannel transcript verify-export</code>.</div>"
        if doc["on_record"]
        else "<div class='banner off'>OFF THE RECORD: nothing in this transcript is signed. It is "
        "deniable by design and proves nothing to a third party.</div>"
    )
    keys = "".join(
        f"<tr><td>{role}</td><td>{escape(s['name'])}</td>"
        f"<td class='mono'>{escape(grouped(s['fingerprint']))}</td>"
        f"<td class='mono'>{escape(s['ed25519'])}</td></tr>"
        for role, s in stations.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Transcript of line {escape(doc["line"])}</title>
<style>{STYLE}</style></head><body>
<h1>Transcript of line {escape(doc["line"])}: {escape(sender[0])} ⇄ {escape(sender[1])}</h1>
<p>Exported by {escape(stations[doc["exported_by"]]["name"])} ({escape(doc["exported_by"])}) at
{_when(doc["exported_at"], millis=True)} (its clock). Line id
<span class="mono">{escape(doc["line_id"])}</span>. {doc["counts"][0]} + {doc["counts"][1]} entries;
transcript head <span class="mono">{escape(doc["head"])}</span>.</p>
{record}
<h2>Messages</h2>
<table><tr><th>message</th><th>sent (sender's clock)</th><th>precedence</th><th>text</th>
<th>receipts</th></tr>
{"".join(rows) or "<tr><td colspan=5>no messages</td></tr>"}</table>
{withheld_note}<h2>Checkpoints</h2>
<table><tr><th>by</th><th>entries</th><th>heads</th><th>recorded</th></tr>
{checkpoints or "<tr><td colspan=4>no checkpoints yet</td></tr>"}</table>
<h2>Stations and keys</h2>
<table><tr><th>role</th><th>station</th><th>fingerprint</th><th>Ed25519 public key</th></tr>{keys}</table>
</body></html>
"""
