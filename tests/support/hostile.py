"""A hostile peer built from the real station code, and a check that output stays inert.

:func:`hostile_station` starts a real station process whose own name checks are lifted (see
``hostile_site/sitecustomize.py``): its hello can carry any station name and its acks any
operator name. :func:`raw_controls` counts what must never reach a terminal from the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

from support.stations import ENV, StationProcess

HOSTILE_SITE = Path(__file__).parent / "hostile_site"

#: What a hostile peer puts in a name: clear the screen, retitle the terminal, reverse the text.
HOSTILE_NAME = "evil\x1b[2J\x1b]0;pwned\x07\u202e"


def hostile_station(directory: Path, name: str, home_name: str = "hostile") -> StationProcess:
    """A real station (not started) that seals whatever names it is given into its frames."""
    path = os.pathsep.join(p for p in (str(HOSTILE_SITE), ENV.get("PYTHONPATH", "")) if p)
    return StationProcess(directory, name, env={**ENV, "PYTHONPATH": path}, home_name=home_name)


def raw_controls(output: str) -> int:
    """Characters in CLI output that a terminal would interpret: every non-printable but newline."""
    return sum(1 for c in output if c != "\n" and not c.isprintable())
