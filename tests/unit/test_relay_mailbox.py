"""The relay's queue rules (pure) and the SQLite mailbox store."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backchannel.errors import StorageError
from backchannel.relay import mailbox as rules
from backchannel.relay.mailbox import PushWindow, QueueLimits
from backchannel.relay.storage import (
    AddMailbox,
    DeleteMailbox,
    DeleteMessage,
    ExpireMailboxes,
    ExpireMessages,
    MailboxRecord,
    MailboxStore,
    Outcome,
    PutMessage,
    TouchMailbox,
)
from backchannel.relay.storage import postgres as pg_storage
from backchannel.relay.storage.postgres import PostgresMailboxStore
from backchannel.relay.storage.sqlite import SqliteMailboxStore, migrate, schema_files

LIMITS = QueueLimits(max_mailbox_depth=100, max_mailboxes=10)
T0 = 1_700_000_000.0
RECV, SEND = b"r" * 16, b"s" * 16


# ---- pure rules ------------------------------------------------------------------------


def test_message_id_is_the_first_16_bytes_of_sha256() -> None:
    assert rules.message_id(b"abc") == hashlib.sha256(b"abc").digest()[:16]
    assert rules.message_id(b"abc") != rules.message_id(b"abd")


def test_limits() -> None:
    limits = QueueLimits(max_mailbox_depth=3, max_mailboxes=2)
    assert rules.depth_allows(2, limits) and not rules.depth_allows(3, limits)
    assert rules.quota_allows(1, limits) and not rules.quota_allows(2, limits)
    assert rules.expiry_cutoff(1000.0, 60.0) == 940.0


def test_push_window_bounds_unacked_frames() -> None:
    window = PushWindow(3)
    assert window.fetch_limit() == 3 and window.cursor == 0
    for seq in (4, 7, 9):
        window.pushed(seq, b"m%d" % seq, T0, 0.0)
    assert window.fetch_limit() == 0 and window.cursor == 9 and window.unacked == 3
    assert window.acked(b"m7") is True
    assert window.acked(b"m7") is False  # a second ACK frees nothing
    assert window.acked(b"unknown") is False
    assert window.fetch_limit() == 1
    with pytest.raises(ValueError):
        window.pushed(8, b"late", T0, 0.0)  # never backwards: FIFO
    with pytest.raises(ValueError):
        PushWindow(0)


def test_push_window_catch_up_reads_from_the_start_and_skips_what_awaits_its_ack() -> None:
    """Issue 14: row 5 committed but its reply was lost, so row 6 was pushed past it."""
    window = PushWindow(3)
    window.pushed(6, b"m6", T0, 0.0)
    assert window.awaits(b"m6", 6) and not window.awaits(b"m6", 7) and not window.awaits(b"m5", 5)
    window.rewind()
    assert window.cursor == 0
    window.pushed(5, b"m5", T0, 0.0)  # the stranded row: pushed now
    window.skip(6)  # already awaited: not pushed twice
    assert window.cursor == 6 and window.unacked == 2


def test_push_window_forgets_expired_frames() -> None:
    window = PushWindow(5)
    window.pushed(1, b"old", T0, 0.0)
    window.pushed(2, b"new", T0 + 100, 0.0)
    assert window.forget_expired(T0 + 50) == 1
    assert window.unacked == 1 and window.fetch_limit() == 4


def test_push_window_without_redelivery_never_has_anything_due() -> None:
    window = PushWindow(5)
    window.pushed(1, b"a", T0, 0.0)
    assert window.next_redelivery() is None and window.due(1e9) == []
    with pytest.raises(ValueError):
        PushWindow(5, redeliver_seconds=0)


def test_unacked_frames_come_due_after_redeliver_seconds_oldest_first() -> None:
    window = PushWindow(10, redeliver_seconds=30.0)
    assert window.next_redelivery() is None  # nothing pushed: nothing to wait for
    window.pushed(1, b"a", T0, 100.0)
    window.pushed(2, b"b", T0, 110.0)
    window.pushed(3, b"c", T0, 120.0)
    assert window.next_redelivery() == 130.0
    assert window.due(129.9) == []
    assert window.due(130.0) == [(1, b"a")]  # "older than": exactly 30 s is due
    assert window.due(145.0) == [(1, b"a"), (2, b"b")]
    # Acknowledged frames are never due.
    assert window.acked(b"a")
    assert window.due(145.0) == [(2, b"b")] and window.next_redelivery() == 140.0


def test_a_redelivered_frame_waits_a_full_interval_again_and_keeps_its_slot() -> None:
    window = PushWindow(3, redeliver_seconds=10.0)
    window.pushed(1, b"a", T0, 0.0)
    window.pushed(2, b"b", T0, 5.0)
    assert window.redelivered(b"a", 1, 10.0)
    # Ordered by latest push: b (pushed at 5) is now first in line, a (10) after it.
    assert window.next_redelivery() == 15.0
    assert window.due(15.0) == [(2, b"b")]
    assert window.due(20.0) == [(2, b"b"), (1, b"a")]
    assert window.unacked == 2 and window.fetch_limit() == 1  # still awaiting its ACK
    assert window.cursor == 2  # redelivery never moves the cursor


def test_redelivery_of_a_frame_no_longer_awaited_is_refused() -> None:
    window = PushWindow(3, redeliver_seconds=10.0)
    window.pushed(1, b"a", T0, 0.0)
    assert window.due(10.0) == [(1, b"a")]
    window.acked(b"a")  # the ACK arrived while the server read the row back
    assert window.redelivered(b"a", 1, 10.0) is False
    assert window.forget(b"a", 1) is False
    # Acked, then the same payload stored again as row 2 and pushed: row 1's redelivery
    # or disappearance must not touch row 2's slot.
    window.pushed(2, b"a", T0, 11.0)
    assert window.redelivered(b"a", 1, 12.0) is False
    assert window.forget(b"a", 1) is False
    assert window.unacked == 1 and window.next_redelivery() == 21.0
    assert window.forget(b"a", 2) is True
    assert window.unacked == 0 and window.next_redelivery() is None


def test_expired_frames_are_never_due() -> None:
    window = PushWindow(3, redeliver_seconds=1.0)
    window.pushed(1, b"old", T0, 0.0)
    window.pushed(2, b"new", T0 + 100, 0.0)
    window.forget_expired(T0 + 50)
    assert window.due(5.0) == [(2, b"new")]


# ---- the SQLite store ------------------------------------------------------------------


@dataclass
class Backend:
    """Where a store lives: an SQLite file or a fresh PostgreSQL database (a real one)."""

    location: str
    opener: Callable[[str], MailboxStore]

    def reopen(self) -> MailboxStore:
        return self.opener(self.location)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(str(tmp_path / "relay.db"), SqliteMailboxStore)
    cluster = request.getfixturevalue("postgres_cluster")
    return Backend(cluster.new_database(), PostgresMailboxStore)


def open_store(tmp_path: Path) -> SqliteMailboxStore:
    store = SqliteMailboxStore(str(tmp_path / "relay.db"))
    with_mailbox(store)
    return store


def with_mailbox(store: MailboxStore) -> MailboxStore:
    result = store.apply([AddMailbox(MailboxRecord(RECV, SEND, b"R" * 32, b"S" * 32, T0))], T0, LIMITS)
    assert result[0].outcome is Outcome.CREATED
    return store


def test_sqlite_store_satisfies_the_protocol(tmp_path: Path) -> None:
    store: MailboxStore = open_store(tmp_path)
    store.close()


def test_pragmas_and_schema_version(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.close()
    db = sqlite3.connect(tmp_path / "relay.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [row[0] for row in db.execute("SELECT version FROM schema_version")]
    assert versions == [n for n, _ in schema_files()] == [1, 2]
    assert migrate(db) == 2  # idempotent: nothing applied twice
    db.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "relay.db")
    db.execute("INSERT INTO schema_version VALUES (999, 0)")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="newer"):
        SqliteMailboxStore(str(tmp_path / "relay.db"))


def test_mailbox_lookup(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    record = store.mailbox_by_recv(RECV)
    assert record is not None and record.send_id == SEND and record.recv_key == b"R" * 32
    assert store.mailbox_by_send(SEND) == record
    assert store.mailbox_by_recv(SEND) is None
    store.close()


def test_store_is_idempotent_and_fifo(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    results = store.apply(
        [PutMessage(RECV, b"one"), PutMessage(RECV, b"two"), PutMessage(RECV, b"one")], T0, LIMITS
    )
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED, Outcome.DUPLICATE]
    assert results[0].msg_id == results[2].msg_id == rules.message_id(b"one")
    (again,) = store.apply([PutMessage(RECV, b"one")], T0, LIMITS)
    assert again.outcome is Outcome.DUPLICATE and again.msg_id == results[0].msg_id
    assert again.count == results[0].count  # a duplicate names the waiting row (issue 14)
    one, three = rules.message_id(b"one"), rules.message_id(b"three")
    assert store.find_messages([(RECV, one), (RECV, three)]) == {(RECV, one): results[0].count}
    rows = store.messages_after(RECV, 0, 10)
    assert [r.payload for r in rows] == [b"one", b"two"]
    assert rows[0].seq < rows[1].seq
    assert store.messages_after(RECV, rows[0].seq, 10) == rows[1:]
    assert store.messages_after(RECV, 0, 1) == rows[:1]
    assert store.depth(RECV) == 2
    store.close()


def test_ack_deletes_and_sequence_numbers_are_never_reused(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    (first,) = store.apply([PutMessage(RECV, b"a")], T0, LIMITS)
    deleted = store.apply(
        [
            DeleteMessage(RECV, first.msg_id),
            DeleteMessage(RECV, first.msg_id),
            DeleteMessage(RECV, b"?" * 16),
        ],
        T0,
        LIMITS,
    )
    assert [r.outcome for r in deleted] == [Outcome.DELETED, Outcome.ABSENT, Outcome.ABSENT]
    assert store.depth(RECV) == 0
    (second,) = store.apply([PutMessage(RECV, b"b")], T0, LIMITS)
    assert second.count > first.count  # a cursor at the old seq still sees the new row
    assert [r.payload for r in store.messages_after(RECV, first.count, 10)] == [b"b"]
    store.close()


def test_delete_mailbox_removes_it_and_every_frame_durably(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    store.apply([PutMessage(RECV, b"a"), PutMessage(RECV, b"b")], T0, LIMITS)
    results = store.apply(
        [DeleteMailbox(RECV), PutMessage(RECV, b"c"), DeleteMailbox(RECV)], T0, LIMITS
    )  # (a SEND after the DELETE in the same batch finds no mailbox)
    assert [r.outcome for r in results] == [Outcome.MAILBOX_DELETED, Outcome.NO_MAILBOX, Outcome.ABSENT]
    assert results[0].count == 2
    store.close()
    store = backend.reopen()  # durable: gone after a reopen too
    assert store.mailbox_by_recv(RECV) is None and store.mailbox_by_send(SEND) is None
    assert store.messages_after(RECV, 0, 10) == [] and store.depth_summary() == (0, 0, 0)
    store.close()


def test_messages_by_seq_reads_back_only_rows_still_stored(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    other = b"o" * 16
    store.apply([AddMailbox(MailboxRecord(other, b"t" * 16, b"R" * 32, b"S" * 32, T0))], T0, LIMITS)
    stored = store.apply([PutMessage(RECV, b"p%d" % i) for i in range(5)], T0, LIMITS)
    (foreign,) = store.apply([PutMessage(other, b"x")], T0, LIMITS)
    seqs = [r.count for r in stored]
    store.apply([DeleteMessage(RECV, stored[1].msg_id)], T0, LIMITS)
    rows = store.messages_by_seq(RECV, [seqs[3], seqs[1], seqs[0], foreign.count, seqs[3]])
    assert [r.payload for r in rows] == [b"p0", b"p3"]  # oldest first; deleted and foreign rows absent
    assert [r.seq for r in rows] == [seqs[0], seqs[3]]
    assert store.messages_by_seq(RECV, []) == []
    many = store.apply([PutMessage(RECV, b"m%d" % i) for i in range(1200)], T0, QueueLimits(10_000, 10))
    assert len(store.messages_by_seq(RECV, [r.count for r in many])) == 1200  # chunked IN lists
    store.close()


def test_depth_limit_counts_within_a_batch(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    limits = QueueLimits(max_mailbox_depth=2, max_mailboxes=10)
    results = store.apply([PutMessage(RECV, b"%d" % i) for i in range(3)], T0, limits)
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED, Outcome.MAILBOX_FULL]
    (dup,) = store.apply([PutMessage(RECV, b"0")], T0, limits)
    assert dup.outcome is Outcome.DUPLICATE  # a retry of a stored frame is still answered
    results = store.apply([DeleteMessage(RECV, rules.message_id(b"0")), PutMessage(RECV, b"new")], T0, limits)
    assert [r.outcome for r in results] == [Outcome.DELETED, Outcome.STORED]
    store.close()


def test_mailbox_quota_and_id_collision(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    limits = QueueLimits(max_mailbox_depth=2, max_mailboxes=2)
    other = MailboxRecord(b"x" * 16, b"y" * 16, b"R" * 32, b"S" * 32, T0)
    clash = MailboxRecord(b"z" * 16, SEND, b"R" * 32, b"S" * 32, T0)
    third = MailboxRecord(b"q" * 16, b"w" * 16, b"R" * 32, b"S" * 32, T0)
    results = store.apply([AddMailbox(clash), AddMailbox(other), AddMailbox(third)], T0, limits)
    assert [r.outcome for r in results] == [Outcome.ID_TAKEN, Outcome.CREATED, Outcome.QUOTA]
    assert store.mailbox_by_recv(b"x" * 16) is not None
    assert store.mailbox_by_recv(b"z" * 16) is None
    store.close()


def test_expiry(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    store.apply([PutMessage(RECV, b"old")], T0, LIMITS)
    store.apply([PutMessage(RECV, b"new")], T0 + 100, LIMITS)
    cutoff = rules.expiry_cutoff(T0 + 150, 100)
    (result,) = store.apply([ExpireMessages(cutoff)], T0 + 150, LIMITS)
    assert result.outcome is Outcome.EXPIRED and result.count == 1
    assert [r.payload for r in store.messages_after(RECV, 0, 10)] == [b"new"]
    store.close()


def test_a_failed_batch_commits_nothing(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    # A value the database cannot store fails the statement: the whole batch rolls back,
    # including the valid frame before it.
    unstorable = DeleteMessage(RECV, object())  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        store.apply([PutMessage(RECV, b"fine"), unstorable], T0, LIMITS)
    assert store.depth(RECV) == 0
    (ok,) = store.apply([PutMessage(RECV, b"fine")], T0, LIMITS)
    assert ok.outcome is Outcome.STORED
    store.close()


def test_a_frame_for_a_mailbox_that_is_gone_is_refused_not_a_failed_batch(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    results = store.apply([PutMessage(RECV, b"fine"), PutMessage(b"?" * 16, b"orphan")], T0, LIMITS)
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.NO_MAILBOX]
    assert store.depth(RECV) == 1
    store.close()


def test_unused_mailboxes_expire_and_give_their_quota_back(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())  # RECV, created at T0
    limits = QueueLimits(max_mailbox_depth=10, max_mailboxes=4)
    idle, busy, subscribed = b"i" * 16, b"b" * 16, b"u" * 16
    store.apply(
        [
            AddMailbox(MailboxRecord(m, m[:1] * 15 + b"s", b"R" * 32, b"S" * 32, T0))
            for m in (idle, busy, subscribed)
        ],
        T0,
        limits,
    )
    (refused,) = store.apply(
        [AddMailbox(MailboxRecord(b"x" * 16, b"y" * 16, b"R" * 32, b"S" * 32, T0))], T0, limits
    )
    assert refused.outcome is Outcome.QUOTA
    store.apply([PutMessage(busy, b"waiting")], T0 + 50, limits)  # a frame keeps its mailbox
    (touched,) = store.apply([TouchMailbox(RECV)], T0 + 80, limits)  # just subscribed
    (absent,) = store.apply([TouchMailbox(b"?" * 16)], T0 + 80, limits)
    assert touched.outcome is Outcome.TOUCHED and absent.outcome is Outcome.ABSENT
    cutoff = rules.expiry_cutoff(T0 + 100, 60)  # used before T0 + 40: idle
    (swept,) = store.apply([ExpireMailboxes(cutoff, in_use=(subscribed,))], T0 + 100, limits)
    assert swept.outcome is Outcome.EXPIRED and swept.count == 1
    assert store.mailbox_by_recv(idle) is None
    assert all(store.mailbox_by_recv(m) is not None for m in (RECV, busy, subscribed))
    (put,) = store.apply([PutMessage(idle, b"too late")], T0 + 100, limits)
    assert put.outcome is Outcome.NO_MAILBOX
    (created,) = store.apply(
        [AddMailbox(MailboxRecord(b"x" * 16, b"y" * 16, b"R" * 32, b"S" * 32, T0))], T0, limits
    )
    assert created.outcome is Outcome.CREATED  # the quota came back
    # Once its frame is gone, the mailbox nobody subscribed to goes too.
    store.apply([DeleteMessage(busy, rules.message_id(b"waiting"))], T0 + 100, limits)
    (swept,) = store.apply([ExpireMailboxes(rules.expiry_cutoff(T0 + 200, 60))], T0 + 200, limits)
    assert swept.count == 4 and store.mailbox_by_recv(busy) is None
    store.close()


def test_frames_survive_reopening(backend: Backend) -> None:
    store = with_mailbox(backend.reopen())
    store.apply([PutMessage(RECV, b"durable")], T0, LIMITS)
    store.close()
    reopened = backend.reopen()
    assert [r.payload for r in reopened.messages_after(RECV, 0, 10)] == [b"durable"]
    reopened.close()


def test_unopenable_database_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        SqliteMailboxStore(str(tmp_path / "missing" / "relay.db"))


# ---- the PostgreSQL store only ---------------------------------------------------------------


def test_postgres_schema_version_and_a_newer_schema_refused(postgres_cluster: Any) -> None:
    url = postgres_cluster.new_database()
    PostgresMailboxStore(url).close()
    PostgresMailboxStore(url).close()  # idempotent: nothing applied twice
    with psycopg.connect(url, autocommit=True) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
        assert versions == [n for n, _ in pg_storage.schema_files()] == [1, 2]
        conn.execute("INSERT INTO schema_version VALUES (999, 0)")
    with pytest.raises(StorageError, match="newer"):
        PostgresMailboxStore(url)


def test_an_unreachable_postgres_is_a_storage_error_without_the_password(postgres_cluster: Any) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{postgres_cluster.port}/no_such_database"
    with pytest.raises(StorageError, match="no_such_database") as caught:
        PostgresMailboxStore(url)
    assert "hunter2" not in str(caught.value)
    query_form = f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/no_such_database?password=hunter2"
    with pytest.raises(StorageError) as caught:
        PostgresMailboxStore(query_form)
    assert "hunter2" not in str(caught.value)


def test_a_postgres_store_reconnects_after_the_server_dropped_it(postgres_cluster: Any) -> None:
    url = postgres_cluster.new_database()
    store = with_mailbox(PostgresMailboxStore(url))
    store.apply([PutMessage(RECV, b"before")], T0, LIMITS)
    with psycopg.connect(url, autocommit=True) as admin:  # what a server restart does to us
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(StorageError):
        store.depth(RECV)  # the request in flight when the connection died fails, clearly
    (after,) = store.apply([PutMessage(RECV, b"after")], T0, LIMITS)  # then it is back
    assert after.outcome is Outcome.STORED
    assert [r.payload for r in store.messages_after(RECV, 0, 10)] == [b"before", b"after"]
    store.close()
