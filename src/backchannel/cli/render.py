"""Human output for the CLI (``--json`` bypasses all of this).

Everything here takes the JSON-ready dicts the station returns, so the same rendering works
for results that came through the control socket.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
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


def lines_table(lines: list[dict[str, Any]]) -> Table:
    table = Table(title="Lines", title_justify="left")
    for col in ("line", "peer", "state", "verified", "relays up", "sent", "recv", "unacked", "last contact"):
        table.add_column(col)
    for line in lines:
        table.add_row(
            line["name"],
            line["peer_name"],
            line["state"],
            "yes" if line["verified"] else "[red]NO[/red]",
            f"{len(line['relays_connected'])}/{len(line['relays'])}",
            str(line["sent"]),
            str(line["received"]),
            str(line["unacknowledged"]),
            when(line["last_contact"]),
        )
    return table


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
