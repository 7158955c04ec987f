"""Jinja2 for the console: the templates in ``templates/`` and the filters they use.

All times are shown in UTC with a ``Z`` (as in signals traffic), so the two stations of a line,
often in different time zones, read the same clock. Every colour on a page has a text label
beside it: health and precedence must be readable without telling red from green.
"""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import quote

import jinja2

HEALTH_LABELS = {
    "up": ("✔", "UP"),
    "degraded": ("◐", "DEGRADED"),
    "down": ("✖", "DOWN"),
    "pairing": ("…", "PAIRING"),
    "failed": ("✖", "FAILED"),
    "unknown": ("?", "UNKNOWN"),
}

PRECEDENCE_HELP = {
    "FLASH": "Highest: act at once",
    "IMMEDIATE": "Urgent: act within minutes",
    "PRIORITY": "Prompt attention",
    "ROUTINE": "Normal business",
}


def when(ts: float | None, now: float | None = None) -> str:
    """``14:03:22Z`` today (UTC), ``2026-11-01 14:03Z`` on another day; ``—`` for none."""
    if ts is None:
        return "—"
    moment = dt.datetime.fromtimestamp(ts, dt.UTC)
    today = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).date()
    if moment.date() == today:
        return moment.strftime("%H:%M:%SZ")
    return moment.strftime("%Y-%m-%d %H:%MZ")


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(ts: float | None, now: float | None = None) -> str:
    """``just now``, ``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 days ago``."""
    if ts is None:
        return "never"
    seconds = max(0.0, (time.time() if now is None else now) - ts)
    if seconds < 2:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    if seconds < 7200:
        return f"{seconds / 60:g} minutes"
    return f"{seconds / 3600:g} hours"


def health_icon(state: str) -> str:
    return HEALTH_LABELS.get(state, ("?", state.upper()))[0]


def health_label(state: str) -> str:
    return HEALTH_LABELS.get(state, ("?", state.upper()))[1]


def grouped_rows(grouped: str, per_row: int = 4) -> list[list[str]]:
    groups = grouped.split()
    return [groups[i : i + per_row] for i in range(0, len(groups), per_row)]


def chunks(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("backchannel.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        iso=iso,
        ago=ago,
        duration=duration,
        health_icon=health_icon,
        health_label=health_label,
        grouped_rows=grouped_rows,
        chunks=chunks,
        q=lambda value: quote(str(value), safe=""),
    )
    env.globals["precedence_help"] = PRECEDENCE_HELP
    return env
