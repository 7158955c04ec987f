"""Human output for the CLI (``--json`` bypasses all of this).

Everything here takes the JSON-ready dicts the station returns, so the same rendering works
for results that came through the control socket.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console, Group
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

PRECEDENCE_STYLE = {"FLASH": "bold red", "IMMEDIATE": "bold yellow", "PRIORITY": "cyan", "ROUTINE": ""}
STATUS_STYLE = {
    "queued": "yellow",
    "relayed": "cyan",
    "delivered": "green",
    "acknowledged": "bold green",
    "received": "bold",
}


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


HEALTH_STYLE = {
    "up": "green",
    "degraded": "yellow",
    "down": "bold red",
    "unknown": "dim",
    "pairing": "yellow",
}


def lines_table(lines: list[dict[str, Any]]) -> Table:
    table = Table(title="Lines", title_justify="left")
    columns = (
        "line",
        "peer",
        "health",
        "verified",
        "relays up",
        "sent",
        "recv",
        "unacked",
        "alarms",
        "last contact",
    )
    for col in columns:
        table.add_column(col)
    for line in lines:
        health = line.get("health", line["state"])
        table.add_row(
            line["name"],
            line["peer_name"],
            f"[{HEALTH_STYLE.get(health, '')}]{health}[/]",
            "yes" if line["verified"] else "[red]NO[/red]",
            f"{len(line['relays_connected'])}/{len(line['relays'])}",
            str(line["sent"]),
            str(line["received"]),
            str(line["unacknowledged"]),
            str(line.get("open_alarms", 0)),
            when(line["last_contact"]),
        )
    return table


def circuits_table(lines: list[dict[str, Any]]) -> Table:
    table = Table(title="Circuits", title_justify="left")
    for col in ("line", "relay", "health", "relay link", "rtt", "last in", "last out", "waiting"):
        table.add_column(col)
    for line in lines:
        for c in line.get("circuits", []):
            table.add_row(
                line["name"],
                c["url"],
                f"[{HEALTH_STYLE.get(c['state'], '')}]{c['state']}[/]",
                "connected" if c["connected"] else "[red]lost[/]",
                "-" if c["rtt_ms"] is None else f"{c['rtt_ms']:.1f} ms",
                when(c["last_in"]),
                when(c["last_out"]),
                str(c.get("pending", 0)),
            )
    return table


def alarms_table(alarms: list[dict[str, Any]]) -> Table:
    table = Table(title="Alarms", title_justify="left")
    for col in ("id", "state", "kind", "line", "raised", "cleared", "message"):
        table.add_column(col)
    for a in alarms:
        style = "bold red" if a["state"] == "raised" else "green"
        table.add_row(
            a["id"],
            f"[{style}]{a['state']}[/]",
            a["kind"],
            a["line"] or "-",
            when(a["raised_at"]),
            when(a["cleared_at"]),
            a["message"],
        )
    return table


def status_view(v: dict[str, Any]) -> Group:
    parts: list[Any] = [lines_table(v["lines"]), circuits_table(v["lines"])]
    if v.get("alarms"):
        parts.append(alarms_table(v["alarms"]))
    parts.append(messages_table(v["messages"], "Sent messages"))
    counters = dict(v.get("rejected") or {})
    copies = counters.pop("duplicate", 0)
    if copies:
        parts.append(f"Copies dropped (already received through another circuit or resent): {copies}")
    resent = counters.pop("resent", 0)
    if resent:
        parts.append(f"Frames sent again end to end (a relay lost them after storing them): {resent}")
    if counters:
        parts.append("Rejected input: " + ", ".join(f"{k} {n}" for k, n in sorted(counters.items())))
    return Group(*parts)


def transcript_table(v: dict[str, Any]) -> Table:
    mode = "on the record" if v["on_record"] else "off the record"
    table = Table(title=f"Record of line {v['line']} ({mode}); head {v['head'][:16]}…", title_justify="left")
    for col in ("dir", "seq", "kind", "content", "chain hash"):
        table.add_column(col)
    for e in v["entries"]:
        p = e["payload"]
        kind = p.get("t", "?")
        content = _entry_summary(kind, p)
        table.add_row("→" if e["direction"] == 0 else "←", str(e["seq"]), kind, content, e["hash"][:16] + "…")
    return table


def drafts_table(drafts: list[dict[str, Any]]) -> Table:
    table = Table(title="Awaiting release (two-person rule)", title_justify="left")
    for col in ("draft", "line", "precedence", "drafted by", "at", "text"):
        table.add_column(col)
    for d in drafts:
        table.add_row(
            d["id"], d["line"], d["precedence"], d["drafted_by"], when(d["created_at"]), _short(d["text"])
        )
    return table


def _entry_summary(kind: str, p: dict[str, Any]) -> str:
    if kind == "msg":
        return f"[{p['p']}] {_short(p['text'], 40)}"
    if kind == "ack":
        return f"acknowledges #{p['seq']} by {p['op']}"
    if kind == "delivered":
        return f"has everything up to #{p['upto']}"
    if kind == "checkpoint":
        return f"heads at {p['n'][0]}/{p['n'][1]}"
    if kind == "test":
        return f"link test {p['id']}"
    if kind == "test-reply":
        return f"answer to test {p['id']} via {len(p['circuits'])} circuits"
    return ""


def messages_table(messages: list[dict[str, Any]], title: str) -> Table:
    """Sent messages show their receipts; received ones when they were sent, received, read."""
    inbound = bool(messages) and all(m["direction"] == "in" for m in messages)
    table = Table(title=title, title_justify="left")
    times = ("sent", "received", "acknowledged") if inbound else ("relayed", "delivered", "acknowledged")
    for col in ("ref", "precedence", "status", "text", *times):
        table.add_column(col)
    for m in messages:
        ack = when(m["acknowledged_at"])
        if m["acknowledged_by"]:
            ack += f" by {m['acknowledged_by']}"
        style = PRECEDENCE_STYLE.get(m["precedence"], "")
        first = m["created_at"] if inbound else m["relayed_at"]
        table.add_row(
            m["ref"],
            f"[{style}]{m['precedence']}[/]" if style else m["precedence"],
            f"[{STATUS_STYLE.get(m['status'], '')}]{m['status']}[/]",
            _short(m["text"]),
            when(first),
            when(m["delivered_at"]),
            ack,
        )
    return table


def message_line(m: dict[str, Any]) -> str:
    return f"{m['ref']} [{m['precedence']}] {m['status']}: {_short(m['text'], 60)}"


def _short(text: str, width: int = 48) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
