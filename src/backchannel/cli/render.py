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

Layout is for an 80-column terminal and for pipes: messages, lines, circuits, alarms and
drafts are *blocks* (a head line starting with the reference or name, then indented fields
and the text, wrapped to the console's width by :func:`wrapped` and :func:`packed`), so a
reference is never cut and a long text is read in full. When stdout is not a terminal,
nothing is coloured and tables have no box drawing (:func:`table`). Every time is UTC,
marked ``Z`` (:func:`when`), as on the console.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterable
from typing import Any

from rich import box
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
    """A time as the CLI shows every time: UTC, to the second, marked ``Z`` (as on the console)."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


INDENT = "  "


def width() -> int:
    """The console's width (``$COLUMNS`` or the terminal's; 80 when piped without one)."""
    return max(40, console.width)


def table(title: str | Text | None = None) -> Table:
    """A table with box drawing and a coloured header on a terminal, plain columns in a pipe."""
    if console.is_terminal:
        return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    return Table(
        title=title, title_justify="left", box=None, show_edge=False, pad_edge=False, header_style=""
    )


def wrapped(text: str, indent: str = INDENT) -> Text:
    """A message body shown whole: visible escapes, its own line breaks kept, wrapped to the width."""
    lines: list[str] = []
    for paragraph in visible(text, keep="\n").split("\n"):
        lines += textwrap.wrap(
            paragraph, width=width() - len(indent), break_on_hyphens=False, replace_whitespace=False
        ) or [""]
    return Text("\n".join(indent + line for line in lines))


def packed(
    fields: Iterable[Text | str], indent: str = INDENT, gap: str = "   ", first: str | None = None
) -> Text:
    """Short fields (``relayed 2026-…Z``) side by side, a new indented line when one would overflow.

    ``first`` is the indent of the first line (default ``indent``). A field is never split, so
    a reference or a name longer than the width stays whole (the terminal folds it).
    """
    out = Text()
    column = -1  # nothing on the current line yet
    for field in fields:
        item = field if isinstance(field, Text) else Text(field)
        if column >= 0 and column + len(gap) + len(item) > width():
            out.append("\n")
            column = -1
        if column < 0:
            lead = indent if out or first is None else first
            out.append(lead)
            column = len(lead)
        else:
            out.append(gap)
            column += len(gap)
        out.append_text(item)
        column += len(item)
    return out


def head(*parts: Text | str) -> Text:
    """A block's first line: the reference or name first, never cut; what follows wraps, indented."""
    return packed((p if isinstance(p, Text) else Text(p) for p in parts if p), gap="  ", first="")


def blocks(title: str, items: list[Text], empty: str) -> Group:
    """A titled list of blocks, a blank line between them."""
    parts: list[Text] = [Text(title, style="bold")]
    if not items:
        parts.append(Text(INDENT + empty, style="dim"))
    for i, item in enumerate(items):
        parts += [Text("")] if i else []
        parts.append(item)
    return Group(*parts)


HEALTH_STYLE = {
    "up": "green",
    "degraded": "yellow",
    "down": "bold red",
    "unknown": "dim",
    "pairing": "yellow",
    "failed": "bold red",
}


def line_block(line: dict[str, Any]) -> Text:
    health = line.get("health", line["state"])
    verified = Text("verified") if line["verified"] else Text("NOT VERIFIED", style="bold red")
    record = "on the record" if line.get("on_record", True) else "off the record"
    out = head(
        cell(line["name"], "bold"),
        Text("with ").append_text(cell(line["peer_name"])),
        cell(health, HEALTH_STYLE.get(health, "")),
        verified,
        record,
    )
    out.append("\n")
    out.append_text(
        packed(
            [
                f"relays {len(line['relays_connected'])}/{len(line['relays'])} connected",
                f"sent {line['sent']}",
                f"received {line['received']}",
                Text(f"unacknowledged {line['unacknowledged']}", "bold" if line["unacknowledged"] else ""),
                Text(f"open alarms {line.get('open_alarms', 0)}", "red" if line.get("open_alarms") else ""),
                f"last contact {when(line['last_contact'])}",
                *([f"mailboxes rotated {when(line['rotated_at'])}"] if line.get("rotated_at") else []),
            ]
        )
    )
    return out


def lines_table(lines: list[dict[str, Any]]) -> Group:
    """``lines``: one block per line (name first, never cut)."""
    return blocks("Lines", [line_block(line) for line in lines], "no lines yet: invite or accept one")


def circuits_table(lines: list[dict[str, Any]]) -> Group:
    items: list[Text] = []
    for line in lines:
        for c in line.get("circuits", []):
            out = head(
                cell(line["name"], "bold"),
                cell(c["url"]),
                cell(c["state"], HEALTH_STYLE.get(c["state"], "")),
                "connected" if c["connected"] else Text("relay link lost", style="red"),
            )
            out.append("\n")
            out.append_text(
                packed(
                    [
                        "rtt -" if c["rtt_ms"] is None else f"rtt {c['rtt_ms']:.1f} ms",
                        f"last in {when(c['last_in'])}",
                        f"last out {when(c['last_out'])}",
                        f"waiting {c.get('pending', 0)}",
                    ]
                )
            )
            if "cover_mode" in c:  # (a running station's costs: cover traffic, PROTOCOL §10.7)
                out.append("\n")
                out.append_text(packed(cover_fields(c)))
            items.append(out)
    return blocks("Circuits", items, "no circuits")


def cover_fields(c: dict[str, Any]) -> list[str]:
    """A circuit's cover traffic and what it costs: mode and rate, frames sent, bytes/s."""
    mode, rate = c["cover_mode"], f"{c['cover_rate']:g}/s"
    if mode == "off":
        state = "cover off"
    elif mode == "idle":
        state = f"cover idle (1 per {1 / c['cover_rate_now']:g} s; peer silent; set {rate})"
    else:
        state = f"cover full {rate}"
    if mode != "off" and c.get("cover_flash") == "immediate":
        state += ", FLASH at once"
    return [
        state,
        f"sent {c['sent_real']} real / {c['sent_cover']} cover",
        f"out {c['out_bytes_per_s'] / 1000:.1f} kB/s",
        f"in {c['in_bytes_per_s'] / 1000:.1f} kB/s",
    ]


def alarms_table(alarms: list[dict[str, Any]]) -> Group:
    items: list[Text] = []
    for a in alarms:
        style = "bold red" if a["state"] == "raised" else "green"
        out = head(
            cell(a["id"], "bold"),
            cell(a["state"], style),
            cell(a["kind"]),
            Text("line ").append_text(cell(a["line"])) if a["line"] else "",
        )
        out.append("\n")
        times: list[Text | str] = [f"raised {when(a['raised_at'])}"]
        if a.get("cleared_at"):
            times.append(f"cleared {when(a['cleared_at'])}")
        if a.get("acknowledged_by"):
            by = Text("acknowledged by ").append_text(cell(a["acknowledged_by"]))
            times.append(by.append(f" {when(a['acknowledged_at'])}") if a.get("acknowledged_at") else by)
        out.append_text(packed(times))
        out.append("\n")
        out.append_text(wrapped(a["message"]))
        items.append(out)
    return blocks("Alarms", items, "no alarms")


def status_view(v: dict[str, Any]) -> Group:
    parts: list[Any] = [lines_table(v["lines"]), circuits_table(v["lines"])]
    if v.get("alarms"):
        parts.append(alarms_table(v["alarms"]))
    if "received" in v:
        parts.append(messages_table(v["received"], "Received messages (newest first)"))
    parts.append(messages_table(v["messages"], "Sent messages (newest first)"))
    counters = dict(v.get("rejected") or {})
    copies = counters.pop("duplicate", 0)
    if copies:
        parts.append(f"Copies dropped (already received through another circuit or resent): {copies}")
    cover = counters.pop("cover_received", 0)  # (not rejected: the peer's cover, §10.7)
    if cover:
        parts.append(f"Cover frames received: {cover}")
    resent = counters.pop("resent", 0)
    if resent:
        parts.append(f"Frames sent again end to end (a relay lost them after storing them): {resent}")
    if counters:
        parts.append(
            Text("Rejected input: " + ", ".join(f"{visible(k)} {n}" for k, n in sorted(counters.items())))
        )
    spaced: list[Any] = []
    for part in parts:  # a blank line between sections
        spaced += [Text(""), part] if spaced else [part]
    return Group(*spaced)


def transcript_table(v: dict[str, Any]) -> Group:
    mode = "on the record" if v["on_record"] else "off the record"
    title = packed(
        [
            Text("Record of line ", "bold").append_text(cell(v["line"], "bold")),
            f"({mode});",
            f"head {v['head']}",
        ],
        gap=" ",
        first="",
    )
    entries = table()
    for col in ("dir", "seq", "kind", "content", "chain hash"):
        entries.add_column(col, no_wrap=col != "content", overflow="fold")
    for e in v["entries"]:
        if e.get("withheld"):  # a body this station could not read, or chose not to show
            kind, summary = "withheld", f"(body withheld; digest {str(e.get('digest', ''))[:16]}…)"
        else:
            p = e["payload"]
            kind = str(p.get("t", "?"))
            summary = _entry_summary(kind, p)
        entries.add_row(
            "→" if e["direction"] == 0 else "←",
            str(e["seq"]),
            cell(kind),
            cell(summary),
            cell(e["hash"][:16] + "…"),
        )
    return Group(title, entries)


def drafts_table(drafts: list[dict[str, Any]]) -> Group:
    items: list[Text] = []
    for d in drafts:
        out = head(
            cell(d["id"], "bold"),
            Text("line ").append_text(cell(d["line"])),
            cell(d["precedence"], PRECEDENCE_STYLE.get(d["precedence"], "")),
        )
        out.append("\n")
        out.append_text(
            packed([Text("drafted by ").append_text(cell(d["drafted_by"])), f"at {when(d['created_at'])}"])
        )
        out.append("\n")
        out.append_text(wrapped(d["text"]))
        items.append(out)
    return blocks("Awaiting release (two-person rule)", items, "nothing awaits release")


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


def message_block(m: dict[str, Any]) -> Text:
    """One message: its reference first, precedence and status, its times, its whole text."""
    out = head(
        cell(m["ref"], "bold"),
        cell(m["precedence"], PRECEDENCE_STYLE.get(m["precedence"], "")),
        cell(m["status"], STATUS_STYLE.get(m["status"], "")),
    )
    if m["direction"] == "in":
        times: list[Text | str] = [f"sent {when(m['created_at'])}", f"received {when(m['delivered_at'])}"]
    else:
        times = [f"queued {when(m['created_at'])}"]
        times += [f"{k} {when(m[f'{k}_at'])}" for k in ("relayed", "delivered") if m.get(f"{k}_at")]
    if m["acknowledged_at"]:
        ack = Text(f"acknowledged {when(m['acknowledged_at'])}")
        if m["acknowledged_by"]:
            ack.append(" by ").append_text(cell(m["acknowledged_by"]))
        times.append(ack)
    out.append("\n")
    out.append_text(packed(times))
    out.append("\n")
    out.append_text(wrapped(m["text"]))
    return out


def messages_table(messages: list[dict[str, Any]], title: str) -> Group:
    """Messages as blocks: sent ones with their receipts, received ones when sent, received, read."""
    return blocks(title, [message_block(m) for m in messages], "none")


def message_line(m: dict[str, Any], lead: str = "") -> str:
    """``lead`` and a one-line summary of a message for a markup string (escaped), within the width.

    The reference, precedence and status are whole; only the text is shortened to what is left
    of the line (it is a confirmation: `show REF` prints the message whole).
    """
    summary = f"{lead}{visible(m['ref'])} [{m['precedence']}] {m['status']}"
    room = width() - len(summary) - 2
    return lit(summary + (f": {_short(m['text'], room)}" if room >= 12 else ""))


def _short(text: str, width: int = 48) -> str:
    """``text`` on one line (runs of spaces, tabs and newlines become one space), cut to ``width``."""
    flat = " ".join(visible(text, keep="\n\t").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
