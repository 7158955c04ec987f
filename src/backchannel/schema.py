"""Numbered schema scripts and the one runner that applies them, for every database we own.

Theory of operation
-------------------
The station's SQLite file and the relay's SQLite or PostgreSQL database each keep their
schema as files ``NNN_name.sql`` shipped in a package, and a ``schema_version`` table that
records which have run. :func:`migrate` is the whole policy, written once: read the version,
refuse a database newer than this software (it would be misread), let the caller back the
database up before it is changed, then run each missing script *and* record its number in
one transaction, in order, so a failure leaves the database at the last good version.

What differs per database engine (how to open a transaction, how to record a version) sits
behind :class:`Migratable`; :class:`SqliteMigrations` serves the station and the relay's
SQLite store, the PostgreSQL store brings its own. This module sits below both the station and
the relay (they are siblings and may not import each other) and never in the pure core.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Protocol

from backchannel.errors import StorageError

_SCHEMA_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def numbered_scripts(package: str) -> list[tuple[int, str]]:
    """The schema scripts ``NNN_name.sql`` shipped in ``package``, as (NNN, text), in order."""
    out: list[tuple[int, str]] = []
    for entry in resources.files(package).iterdir():
        match = _SCHEMA_FILE.match(entry.name)
        if match:
            out.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    out.sort()
    return out


class Migratable(Protocol):
    """One database as the runner sees it. Methods may raise the driver's own errors."""

    def current_version(self) -> int:
        """Create the ``schema_version`` table if missing; the highest version it records."""
        ...

    def apply(self, version: int, script: str) -> None:
        """Run ``script`` and record ``version`` in one transaction (all of it or none)."""
        ...


def migrate(
    db: Migratable,
    scripts: Sequence[tuple[int, str]],
    what: str,
    before_upgrade: Callable[[int], None] | None = None,
) -> int:
    """Apply every script newer than the database, in order; return the resulting version.

    ``before_upgrade(current)`` runs once before an existing database (version > 0) is
    changed, e.g. to copy it aside. A database newer than ``scripts`` is a ``StorageError``.
    """
    known = scripts[-1][0] if scripts else 0
    current = db.current_version()
    if current > known:
        raise StorageError(f"{what} schema version {current} is newer than this software ({known})")
    pending = [(version, script) for version, script in scripts if version > current]
    if pending and current > 0 and before_upgrade is not None:
        before_upgrade(current)
    for version, script in pending:
        db.apply(version, script)
        current = version
    return current


class SqliteMigrations:
    """:class:`Migratable` for a ``sqlite3`` connection in autocommit mode.

    ``stamped``: the version table also records when each script ran (the relay's layout;
    the station's older table holds the version alone, and existing files keep it).
    """

    def __init__(self, conn: sqlite3.Connection, *, stamped: bool) -> None:
        self._conn = conn
        self._stamped = stamped

    def current_version(self) -> int:
        columns = (
            "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL"
            if self._stamped
            else ("version INTEGER NOT NULL")
        )
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS schema_version ({columns})")
        row = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        return int(row[0])

    def apply(self, version: int, script: str) -> None:
        record = (
            f"INSERT INTO schema_version (version, applied_at) VALUES ({int(version)},"
            " (julianday('now') - 2440587.5) * 86400.0)"
            if self._stamped
            else f"INSERT INTO schema_version (version) VALUES ({int(version)})"
        )
        try:
            # executescript commits any open transaction first, then runs the text as is: the
            # BEGIN IMMEDIATE ... COMMIT around it makes script and record one transaction.
            self._conn.executescript(f"BEGIN IMMEDIATE;\n{script}\n;{record};\nCOMMIT;")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
