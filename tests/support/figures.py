"""Figures the adversarial tests hold (peak memory, refusals, bytes), printed after the run.

An adversarial test calls ``figure("relay peak RSS under flood", 87.5, "MiB")``; the value is
printed on the test's own output at once (visible with ``-s``) and gathered for the terminal
summary that ``tests/conftest.py`` prints at the end of every run, so a CI log shows what each
attack cost without reading the test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    test: str
    name: str
    value: float | int | str
    unit: str


FIGURES: list[Figure] = []


def figure(name: str, value: float | int | str, unit: str = "") -> None:
    """Record one figure of the running test (its node id comes from pytest's environment)."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    item = Figure(test, name, round(value, 3) if isinstance(value, float) else value, unit)
    FIGURES.append(item)
    print(f"[figure] {name}: {item.value} {unit}".rstrip())


def summary_lines() -> list[str]:
    return [f"{f.test}: {f.name} = {f.value} {f.unit}".rstrip() for f in FIGURES]
