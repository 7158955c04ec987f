"""The one migration runner (backchannel.schema) the station and both relay stores share,
and the rule that the station's rows are read by column name."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from backchannel.errors import StorageError
from backchannel.relay.storage import postgres as relay_postgres
from backchannel.relay.storage import sqlite as relay_sqlite
from backchannel.schema import SqliteMigrations, migrate, numbered_scripts
from backchannel.station.store import Store
from backchannel.station.store import base as station_store

SRC = Path(__file__).resolve().parents[2] / "src" / "backchannel"


def test_every_store_migrates_through_the_shared_runner() -> None:
    for module in (station_store, relay_sqlite, relay_postgres):
        text = Path(module.__file__ or "").read_text(encoding="utf-8")
        assert "backchannel.schema import" in text, module.__name__
        assert "executescript" not in text, module.__name__  # (the runner's job, not theirs)


def test_schema_files_stay_numbered_and_contiguous() -> None:
    packages = ("backchannel.station.schema", "backchannel.relay.schema", "backchannel.relay.schema_postgres")
    for package in packages:
        versions = [version for version, _ in numbered_scripts(package)]
        assert versions == list(range(1, len(versions) + 1)), package


def test_a_station_database_newer_than_the_software_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(StorageError, match="newer"):
        Store.open(path)


def test_the_runner_backs_up_only_an_existing_database_and_stops_at_a_failing_script() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    backups: list[int] = []
    scripts = [(1, "CREATE TABLE a (x INTEGER);"), (2, "CREATE TABLE b (x INTEGER);")]
    assert migrate(SqliteMigrations(conn, stamped=True), scripts[:1], "test", backups.append) == 1
    assert backups == []  # a new database has nothing to save
    assert migrate(SqliteMigrations(conn, stamped=True), scripts, "test", backups.append) == 2
    assert backups == [1]
    broken = [*scripts, (3, "CREATE TABLE c (x INTEGER);\nNOT SQL;")]
    with pytest.raises(sqlite3.Error):
        migrate(SqliteMigrations(conn, stamped=True), broken, "test")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "c" not in tables
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 2


def test_no_sql_in_src_selects_star() -> None:
    """Rows are mapped by column name: a SELECT * into a positional row breaks on the day a
    migration adds or reorders a column."""
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"SELECT\s+\*", line, re.IGNORECASE)
    ]
    assert offenders == []


def test_narrow_rows_have_names_and_still_unpack(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "station.db")
    try:
        with store.transaction():
            store.add_draft("d1", b"\x01" * 16, "FLASH", b"sealed", "ops", 1.0)
            store.add_mailbox(b"\x01" * 16, "ws://relay.test:1", b"r" * 16, b"k" * 44)
        draft = store.draft("d1")
        assert draft is not None and draft.released_by is None and draft.drafted_by == "ops"
        draft_id, *_rest, seq = draft
        assert (draft_id, seq) == ("d1", None)
        [(_line_id, url, recv_id, _key)] = store.mailboxes()
        assert (url, recv_id) == ("ws://relay.test:1", b"r" * 16) == (store.mailboxes()[0].url, recv_id)
    finally:
        store.close()
