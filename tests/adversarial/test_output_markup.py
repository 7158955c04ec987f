"""Attack: the peer sends a message built to crash or fool the operator's terminal.

Rich markup (``[/]`` crashed ``inbox`` and ``transcript show``; ``[bold]`` was obeyed) and
terminal escape sequences (clear the screen, retitle the window, a C1 CSI, a bidi override
that reverses what follows) travel as an ordinary message through a real relay between two
real stations. The receiving operator's CLI must print all of it literally, with every control
character shown as a visible escape (``\\x1b``), and exit 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.figures import figure
from support.hostile import raw_controls
from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, pair, wait_until

#: Short enough that the tables (which cut long texts) still show every part of it.
HOSTILE_TEXT = "[/] [bold]b[/bold] \x1b[2J\x9b1m\u202ee\x07"


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[StationProcess, str, StationProcess, str]]:
    relay: RelayProcess = start_relay(tmp_path, None, "relay")
    stations = [StationProcess(tmp_path, "alpha"), StationProcess(tmp_path, "bravo")]
    try:
        for station in stations:
            station.start()
        a_line, b_line = pair(stations[0], stations[1], relay.url)
        yield stations[0], a_line, stations[1], b_line
    finally:
        for station in stations:
            station.stop()
        relay.stop()


def test_markup_and_escape_sequences_in_a_message_are_printed_literally(
    line: tuple[StationProcess, str, StationProcess, str],
) -> None:
    alpha, a_line, bravo, b_line = line
    sent = alpha.cli("send", a_line, HOSTILE_TEXT, "--wait", "delivered", "--json")
    assert sent.returncode == 0, sent.stderr
    seq = json.loads(sent.stdout)["seq"]
    wait_until("the message to arrive", lambda: bravo.call("inbox", line=b_line))

    inbox = bravo.cli("inbox")
    shown = bravo.cli("transcript", "show", b_line)
    raw = raw_controls(inbox.stdout + inbox.stderr) + raw_controls(shown.stdout + shown.stderr)
    figure("raw control characters reaching the terminal (inbox + transcript show)", raw, "chars")
    assert inbox.returncode == 0, inbox.stderr
    assert shown.returncode == 0, shown.stderr
    assert raw == 0
    for out in (inbox.stdout, shown.stdout):
        assert "Traceback" not in out
        assert "\\x1b[2J" in out  # the escape sequence, visible, not obeyed
        assert "\\u202e" in out  # the bidi override, visible
    assert "[/] [bold]b[/bold]" in inbox.stdout  # markup shown as typed, not obeyed
    assert "\\x9b1m" in inbox.stdout and "\\x07" in inbox.stdout

    # The record keeps exactly what was sent: rendering changes nothing stored.
    stored = bravo.call("message", line=b_line, seq=seq, direction="in")
    assert stored["text"] == HOSTILE_TEXT
