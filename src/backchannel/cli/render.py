"""Human output for the CLI (``--json`` bypasses all of this).

Everything here takes the JSON-ready dicts the station returns, so the same rendering works
for results that came through the control socket.

Output is never interpreted. Much of what is shown comes from the peer or a relay (message
bodies, names, relay URLs, error texts), so none of it may reach Rich's markup parser or the
terminal as is: a ``[/]`` in a message must not crash ``inbox``, ``[bold]`` must not turn bold,
and an escape sequence must not repaint the screen or fake what the operator sees.

- Table cells are :func:`cell` (a ``rich.text.Text``, never parsed as markup); anything put
  into a markup string goes through :func:`lit` (markup escaped).
- Both first make every non-printable character *visible* (:func:`visible`): C0 and C1
  controls, DEL, bidi overrides, zero-width and line-separator characters are shown in Python's
  escape notation, ``\\x1b`` for ESC, ``\\x9b`` for CSI, ``\\u202e`` for RIGHT-TO-LEFT OVERRIDE.
  Only a message body shown whole keeps its newlines; tables flatten them to spaces.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def visible(text: object, keep: str = "") -> str:
    """``text`` with every non-printable character (but those in ``keep``) as a visible escape."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in value)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def lit(text: object, keep: str = "") -> str:
    """``text`` to put inside a markup string: shown literally, never interpreted."""
    return escape(visible(text, keep))


def cell(text: object, style: str = "") -> Text:
    """A table cell showing ``text`` literally (a ``Text`` is never parsed as markup)."""
    return Text(visible(text), style=style)


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
            cell(line["name"]),
            cell(line["peer_name"]),
            cell(health, HEALTH_STYLE.get(health, "")),
            "yes" if line["verified"] else cell("NO", "red"),
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
                cell(line["name"]),
                cell(c["url"]),
                cell(c["state"], HEALTH_STYLE.get(c["state"], "")),
                "connected" if c["connected"] else cell("lost", "red"),
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
            cell(a["id"]),
            cell(a["state"], style),
            cell(a["kind"]),
            cell(a["line"] or "-"),
            when(a["raised_at"]),
            when(a["cleared_at"]),
            cell(a["message"]),
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
        parts.append(
            Text("Rejected input: " + ", ".join(f"{visible(k)} {n}" for k, n in sorted(counters.items())))
        )
    return Group(*parts)


def transcript_table(v: dict[str, Any]) -> Table:
    mode = "on the record" if v["on_record"] else "off the record"
    title = Text(f"Record of line {visible(v['line'])} ({mode}); head {visible(v['head'][:16])}…")
    table = Table(title=title, title_justify="left")
    for col in ("dir", "seq", "kind", "content", "chain hash"):
        table.add_column(col)
    for e in v["entries"]:
        if e.get("withheld"):  # a body this station could not read, or chose not to show
            kind, summary = "withheld", f"(body withheld; digest {str(e.get('digest', ''))[:16]}…)"
        else:
            p = e["payload"]
            kind = str(p.get("t", "?"))
            summary = _entry_summary(kind, p)
        table.add_row(
            "→" if e["direction"] == 0 else "←",
            str(e["seq"]),
            cell(kind),
            cell(summary),
            cell(e["hash"][:16] + "…"),
        )
    return table


def drafts_table(drafts: list[dict[str, Any]]) -> Table:
    table = Table(title="Awaiting release (two-person rule)", title_justify="left")
    for col in ("draft", "line", "precedence", "drafted by", "at", "text"):
        table.add_column(col)
    for d in drafts:
        table.add_row(
            cell(d["id"]),
            cell(d["line"]),
            cell(d["precedence"]),
            cell(d["drafted_by"]),
            when(d["created_at"]),
            cell(_short(d["text"])),
        )
    return table


def _entry_summary(kind: str, p: dict[str, Any]) -> str:
    """One line about a record entry (plain text: the caller shows it literally)."""
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
        first = m["created_at"] if inbound else m["relayed_at"]
        table.add_row(
            cell(m["ref"]),
            cell(m["precedence"], PRECEDENCE_STYLE.get(m["precedence"], "")),
            cell(m["status"], STATUS_STYLE.get(m["status"], "")),
            cell(_short(m["text"])),
            when(first),
            when(m["delivered_at"]),
            cell(ack),
        )
    return table


def message_line(m: dict[str, Any]) -> str:
    """A one-line summary of a message, to put in a markup string (already escaped)."""
    return lit(f"{m['ref']} [{m['precedence']}] {m['status']}: {_short(m['text'], 60)}")


def _short(text: str, width: int = 48) -> str:
    """``text`` on one line (runs of spaces, tabs and newlines become one space), cut to ``width``."""
    flat = " ".join(visible(text, keep="\n\t").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
