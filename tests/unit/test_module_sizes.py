"""Modules stay small enough to read in one sitting (issue 10): none over 500 lines, and the
station facade under 350, so it stays a facade over the parts instead of growing back into one.

Checked over every module of ``src/``: the core, the station, the relay, the CLI and the console.
"""

from __future__ import annotations

from pathlib import Path

from support.figures import figure

SRC = Path(__file__).resolve().parents[2] / "src" / "backchannel"
CHECKED = ("",)
MAX_LINES = 500
MAX_FACADE_LINES = 350


def lines_of(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_of_src_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(SRC)): lines_of(path)
        for area in CHECKED
        for path in sorted((SRC / area).rglob("*.py"))
    }
    largest = max(sizes, key=lambda name: sizes[name])
    figure(f"largest module ({largest})", sizes[largest], "lines")
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_station_facade_stays_under_350_lines() -> None:
    facade = lines_of(SRC / "station" / "station.py")
    figure("station/station.py", facade, "lines")
    assert facade < MAX_FACADE_LINES
