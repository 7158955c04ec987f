"""Golden output of the CLI at 80 columns, piped and on a terminal.

The views are rendered from fixed station results (the dicts the control socket returns) with
a long line name, a long FLASH with its own line break, and an open alarm. Piped, the output
must equal `tests/unit/golden/*.txt` byte for byte: no colour, no box drawing, every line at
most 80 columns, every reference whole. On a terminal (rich's force_terminal) the same text
comes with colour only: stripped of its escape sequences it equals the golden file too (the
transcript's table alone is drawn with a rule on a terminal and has its own golden file).
Regenerate after a deliberate change with BACKCHANNEL_GOLDEN_UPDATE=1 and read the diff.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from backchannel.cli import render

from support.figures import figure

GOLDEN = Path(__file__).parent / "golden"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BOX = set("─│┌┐└┘├┤┬┴┼━┃╭╮╯╰═║")
T0 = 1795638574.4  # 2026-11-25 20:29:34Z
LINE = "washington-embassy-night-desk"

RECEIVED: dict[str, Any] = {
    "line": LINE,
    "seq": 4,
    "ref": f"{LINE}:in/4",
    "direction": "in",
    "precedence": "FLASH",
    "status": "acknowledged",
    "text": "Unidentified aircraft at the border, heading 270, altitude 9,000 m, no transponder. "
    "Please confirm whether it is one of yours.\nReply on this line within ten minutes.",
    "created_at": T0,
    "relayed_at": None,
    "delivered_at": T0 + 0.6,
    "acknowledged_at": T0 + 25,
    "acknowledged_by": "duty-officer-smith",
}
SENT: dict[str, Any] = {
    "line": "moscow",
    "seq": 16,
    "ref": "moscow:out/16",
    "direction": "out",
    "precedence": "ROUTINE",
    "status": "delivered",
    "text": "Received. Not ours either.",
    "created_at": T0 + 30,
    "relayed_at": T0 + 30.2,
    "delivered_at": T0 + 30.5,
    "acknowledged_at": None,
    "acknowledged_by": None,
}
CIRCUIT = {"url": "wss://relay-a.example.org:7400", "state": "up", "connected": True, "rtt_ms": 12.345}
LINES: list[dict[str, Any]] = [
    {
        "name": LINE,
        "peer_name": "washington",
        "state": "established",
        "health": "degraded",
        "verified": False,
        "on_record": True,
        "relays": ["a", "b"],
        "relays_connected": ["a"],
        "sent": 3,
        "received": 12,
        "unacknowledged": 1,
        "open_alarms": 1,
        "last_contact": T0 + 31,
        "circuits": [
            {**CIRCUIT, "last_in": T0 + 31, "last_out": T0 + 30, "pending": 0},
            {
                **CIRCUIT,
                "url": "wss://relay-b.example.net",
                "state": "down",
                "connected": False,
                "rtt_ms": None,
                "last_in": T0 - 600,
                "last_out": T0 - 590,
                "pending": 2,
            },
        ],
    }
]
ALARMS = [
    {
        "id": "a1b2c3d4",
        "state": "raised",
        "kind": "circuit_down",
        "line": LINE,
        "raised_at": T0 - 560,
        "cleared_at": None,
        "message": f"circuit wss://relay-b.example.net of line {LINE} is down (no contact for 40 s)",
    }
]
DRAFTS = [
    {
        "id": "d7",
        "line": "moscow",
        "precedence": "FLASH",
        "text": "Stand down. " * 12,
        "drafted_by": "jones",
        "created_at": T0 + 40,
        "status": "awaiting release",
        "released_by": None,
        "released_at": None,
        "seq": None,
    }
]
TRANSCRIPT = {
    "line": LINE,
    "on_record": True,
    "head": "9f" * 32,
    "counts": [2, 1],
    "entries": [
        {
            "direction": 1,
            "seq": 4,
            "hash": "ab" * 32,
            "payload": {"t": "msg", "p": "FLASH", "text": RECEIVED["text"]},
        },
        {"direction": 0, "seq": 16, "hash": "cd" * 32, "payload": {"t": "ack", "seq": 4, "op": "smith"}},
    ],
}
VIEWS: dict[str, Callable[[], RenderableType]] = {
    "inbox": lambda: render.messages_table([RECEIVED], "Inbox"),
    "outbox": lambda: render.messages_table([SENT], "Sent (newest first)"),
    "show": lambda: render.message_block(RECEIVED),
    "lines": lambda: render.lines_table(LINES),
    "alarms": lambda: render.alarms_table(ALARMS),
    "drafts": lambda: render.drafts_table(DRAFTS),
    "status": lambda: render.status_view(
        {
            "lines": LINES,
            "received": [RECEIVED],
            "messages": [SENT],
            "alarms": ALARMS,
            "rejected": {"duplicate": 3, "bad_frame": 1},
        }
    ),
    "transcript": lambda: render.transcript_table(TRANSCRIPT),
}


def rendered(name: str, terminal: bool, monkeypatch: pytest.MonkeyPatch) -> str:
    out = io.StringIO()
    console = Console(
        file=out,
        width=80,
        force_terminal=terminal,
        highlight=False,
        soft_wrap=True,
        emoji=False,
        color_system="standard" if terminal else None,
    )
    monkeypatch.setattr(render, "console", console)
    console.print(VIEWS[name]())
    return out.getvalue()


def golden(name: str, text: str) -> str:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("BACKCHANNEL_GOLDEN_UPDATE"):
        path.write_text(text, encoding="utf-8")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", VIEWS)
def test_piped_output_at_80_columns_is_the_golden_text(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = rendered(name, terminal=False, monkeypatch=monkeypatch)
    assert "\x1b" not in text and not BOX & set(text)
    widest = max(len(line) for line in text.splitlines())
    assert widest <= 80, text
    for ref in (RECEIVED["ref"], SENT["ref"], LINE):
        if (name in ("inbox", "show", "status") and ref != SENT["ref"]) or (
            name == "outbox" and ref == SENT["ref"]
        ):
            assert ref in text  # whole, on one line
    assert text == golden(name, text)
    if name == "status":
        figure("widest line of `status` piped at 80 columns", widest, "columns")


@pytest.mark.parametrize("name", VIEWS)
def test_terminal_output_is_the_same_text_in_colour(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = rendered(name, terminal=True, monkeypatch=monkeypatch)
    plain = ANSI.sub("", text)
    assert max(len(line) for line in plain.splitlines()) <= 80
    if name == "transcript":
        assert plain == golden("transcript-terminal", plain)
    else:
        assert "\x1b[" in text  # coloured on a terminal
        assert plain == golden(name, plain)


def test_the_cli_console_takes_its_width_from_columns_and_knows_a_pipe() -> None:
    probe = "from backchannel.cli import render; print(render.console.width, render.console.is_terminal)"
    for columns in ("80", "132"):
        result = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": columns},
        )
        assert result.stdout.split() == [columns, "False"], result.stderr


def test_times_are_utc_and_marked() -> None:
    assert render.when(T0) == "2026-11-25 20:29:34Z"
