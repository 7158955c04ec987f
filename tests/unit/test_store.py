"""The station's SQLite store: migrations, transactions, and the tables' operations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.errors import StorageError
from backchannel.station.store import LineRow, Store
from backchannel.station.store import base as store_module

L1, L2 = b"\x01" * 16, b"\x02" * 16


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "station.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store.open(db)
    yield s
    s.close()


def versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


URL = "ws://relay.test:1"
ALL_VERSIONS = [version for version, _ in store_module._schema_files()]


def pending(store: Store) -> list[tuple[bytes, int]]:
    """Frames some circuit still lacks (every test line has one circuit, URL)."""
    one_circuit_per_line(store)
    return [(line_id, seq) for line_id, seq, url in store.unsent() if url == URL]


def one_circuit_per_line(store: Store) -> None:
    for line_id in (L1, L2):
        store.add_peer_mailbox(line_id, URL, b"s" * 16, b"k" * 44)


def test_a_frame_stored_on_every_circuit_leaves_the_tracking(store: Store) -> None:
    one_circuit_per_line(store)
    with store.transaction():
        store.add_peer_mailbox(L1, "ws://second:2", b"t" * 16, b"k" * 44)
        store.add_outbound(L1, 1, "msg", b"f", 1.0)
        store.record_sent([(L1, 1, URL)], at=1.0)
    assert [(seq, url) for _, seq, url in store.unsent()] == [(1, "ws://second:2")]
    with store.transaction():
        store.record_sent([(L1, 1, "ws://second:2")], at=2.0)
    assert store.unsent() == []
    row = store.outbound_one(L1, 1)
    assert row is not None and row.relayed_all == 1 and row.relayed_at == 1.0


def line_row(line_id: bytes = L1, name: str = "moscow", created_at: float = 1.0) -> LineRow:
    return LineRow(
        line_id=line_id,
        name=name,
        role=0,
        state="established",
        peer_name="washington",
        peer_identity=b"i" * 32,
        peer_signing=b"e" * 32,
        keys_sealed=b"sealed keys",
        session_pickle="pickle",
        next_seq=1,
        delivered_upto=1,
        tx_count0=0,
        tx_head0=b"h" * 32,
        tx_count1=1,
        tx_head1=b"g" * 32,
        on_record=0,
        verified_at=None,
        created_at=created_at,
        last_contact=None,
    )


# ---- schema ------------------------------------------------------------------------------


def test_a_new_database_gets_the_schema_and_its_version(store: Store, db: Path) -> None:
    assert versions(db) == ALL_VERSIONS
    assert {
        "meta",
        "invitations",
        "lines",
        "mailboxes",
        "peer_mailboxes",
        "outbox",
        "inbox",
        "held",
        "counters",
    } <= tables(db)


def test_reopening_does_not_apply_the_schema_again(db: Path) -> None:
    first = Store.open(db)
    with first.transaction():
        first.set_meta("name", b"alpha")
    first.close()
    second = Store.open(db)
    assert second.get_meta("name") == b"alpha"
    second.close()
    assert versions(db) == ALL_VERSIONS
    assert not list(db.parent.glob("*.bak"))


def test_a_new_schema_version_is_applied_once_after_a_backup(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db).close()
    original = store_module._schema_files()
    monkeypatch.setattr(
        store_module, "_schema_files", lambda: [*original, (99, "CREATE TABLE extra (x INTEGER);")]
    )
    Store.open(db).close()
    assert versions(db) == [*ALL_VERSIONS, 99]
    assert "extra" in tables(db)
    backup = db.with_suffix(f".v{ALL_VERSIONS[-1]}.bak")
    assert backup.exists()
    assert versions(backup) == ALL_VERSIONS
    Store.open(db).close()  # nothing pending: no error from re-creating the table
    assert versions(db) == [*ALL_VERSIONS, 99]


def test_a_failing_migration_leaves_the_database_at_the_old_version(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db).close()
    original = store_module._schema_files()
    broken = "CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;"
    monkeypatch.setattr(store_module, "_schema_files", lambda: [*original, (99, broken)])
    with pytest.raises(StorageError):
        Store.open(db)
    assert versions(db) == ALL_VERSIONS
    assert "half_done" not in tables(db)


def test_a_file_that_is_not_a_database_is_a_storage_error(db: Path) -> None:
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        Store.open(db)


def test_the_database_runs_in_wal_mode(store: Store, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---- transactions ------------------------------------------------------------------------


def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.add_outbound(L1, 1, "msg", b"frame", 1.0)
        store.count("x")
        store.set_meta("k", b"v")
        raise RuntimeError("crash in the middle")
    assert pending(store) == []
    assert store.counters() == {}
    assert store.get_meta("k") is None


def test_a_nested_transaction_commits_only_with_the_outer_one(store: Store, db: Path) -> None:
    def visible_elsewhere() -> int:
        with sqlite3.connect(db) as other:
            return int(other.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    with store.transaction():
        with store.transaction():
            store.add_outbound(L1, 1, "msg", b"frame", 1.0)
        assert visible_elsewhere() == 0
    assert visible_elsewhere() == 1


def test_an_error_in_a_nested_transaction_rolls_back_the_outer_one(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.add_outbound(L1, 1, "msg", b"a", 1.0)
        with store.transaction():
            store.add_outbound(L1, 2, "msg", b"b", 1.0)
            raise RuntimeError("boom")
    assert pending(store) == []
    with store.transaction():  # the store is usable again
        store.add_outbound(L1, 3, "msg", b"c", 1.0)
    assert pending(store) == [(L1, 3)]


def test_a_constraint_violation_is_a_storage_error_and_rolls_back(store: Store) -> None:
    with store.transaction():
        store.add_outbound(L1, 1, "msg", b"first", 1.0)
    with pytest.raises(StorageError), store.transaction():
        store.add_outbound(L1, 2, "msg", b"second", 1.0)
        store.add_outbound(L1, 1, "msg", b"again", 1.0)
    assert pending(store) == [(L1, 1)]
    assert store.frame(L1, 1) == b"first"


# ---- outbox ------------------------------------------------------------------------------


def test_unrelayed_frames_come_in_line_and_sequence_order(store: Store) -> None:
    with store.transaction():
        for line_id, seq in [(L2, 1), (L1, 3), (L1, 1), (L1, 2)]:
            store.add_outbound(line_id, seq, "msg", b"f%d" % seq, 1.0)
    assert pending(store) == [(L1, 1), (L1, 2), (L1, 3), (L2, 1)]
    assert store.frame(L1, 2) == b"f2"


def test_a_missing_frame_is_a_storage_error(store: Store) -> None:
    with pytest.raises(StorageError, match="missing"):
        store.frame(L1, 99)


def test_marking_relayed_is_idempotent_and_keeps_the_first_time(store: Store) -> None:
    with store.transaction():
        store.add_outbound(L1, 1, "msg", b"f", 1.0)
        store.add_outbound(L1, 2, "msg", b"f", 1.0)
        store.record_sent([(L1, 1, URL)], at=10.0)
        store.record_sent([(L1, 1, URL)], at=20.0)
    assert pending(store) == [(L1, 2)]
    row = store.outbound_one(L1, 1)
    assert row is not None and row.relayed_at == 10.0


def test_a_delivered_receipt_covers_every_frame_up_to_it(store: Store) -> None:
    with store.transaction():
        for seq in (1, 2, 3):
            store.add_outbound(L1, seq, "msg", b"f", 1.0)
        store.record_sent([(L1, 1, URL)], at=5.0)
        store.mark_delivered(L1, 2, at=7.0)
        store.mark_delivered(L1, 3, at=9.0)
    rows = {seq: store.outbound_one(L1, seq) for seq in (1, 2, 3)}
    assert [(r.relayed_at, r.delivered_at) for r in rows.values() if r] == [
        (5.0, 7.0),
        (7.0, 7.0),
        (9.0, 9.0),
    ]
    # delivered through some circuit, but circuit URL never stored 2 and 3: it still gets them
    assert pending(store) == [(L1, 2), (L1, 3)]


def test_only_messages_are_acknowledged_and_only_once(store: Store) -> None:
    with store.transaction():
        store.add_outbound(L1, 1, "welcome", b"f", 1.0)
        store.add_outbound(L1, 2, "msg", b"f", 1.0, "FLASH", b"body")
        store.mark_acknowledged(L1, 1, "op", 3.0)
        store.mark_acknowledged(L1, 2, "first officer", 4.0)
        store.mark_acknowledged(L1, 2, "second officer", 5.0)
    welcome, msg = store.outbound_one(L1, 1), store.outbound_one(L1, 2)
    assert welcome is not None and welcome.acked_at is None
    assert msg is not None and (msg.acked_at, msg.acked_by) == (4.0, "first officer")
    assert msg.precedence == "FLASH" and msg.body_sealed == b"body"


def test_outbound_lists_messages_of_a_line_newest_first(store: Store) -> None:
    with store.transaction():
        store.add_outbound(L1, 1, "welcome", b"f", 1.0)
        store.add_outbound(L1, 2, "msg", b"f", 2.0)
        store.add_outbound(L1, 3, "msg", b"f", 3.0)
        store.add_outbound(L2, 1, "msg", b"f", 4.0)
    assert [r.seq for r in store.outbound(L1)] == [3, 2]
    assert [r.seq for r in store.outbound(L1, kind=None)] == [3, 2, 1]
    assert [(r.line_id, r.seq) for r in store.outbound()] == [(L2, 1), (L1, 3), (L1, 2)]
    assert [r.seq for r in store.outbound(L1, limit=1)] == [3]
    assert store.count_rows("outbox", L1, "kind = 'msg'") == 2


# ---- inbox -------------------------------------------------------------------------------


def test_inbound_messages_are_stored_once_per_sequence_number(store: Store) -> None:
    with store.transaction():
        store.add_inbound(L1, 2, "ROUTINE", b"body", 1.0, 2.0)
    with pytest.raises(StorageError), store.transaction():
        store.add_inbound(L1, 2, "ROUTINE", b"again", 1.0, 3.0)
    row = store.inbound_one(L1, 2)
    assert row is not None and row.body_sealed == b"body"
    assert store.count_rows("inbox", L1) == 1


def test_acknowledging_inbound_and_listing_unacknowledged(store: Store) -> None:
    with store.transaction():
        store.add_inbound(L1, 2, "ROUTINE", b"a", 1.0, 2.0)
        store.add_inbound(L1, 3, "FLASH", b"b", 1.0, 3.0)
        store.ack_inbound(L1, 2, "officer", 4.0)
    assert [r.seq for r in store.inbound(L1)] == [3, 2]
    assert [r.seq for r in store.inbound(L1, unacked_only=True)] == [3]
    assert [r.seq for r in store.inbound(None, unacked_only=True)] == [3]
    acked = store.inbound_one(L1, 2)
    assert acked is not None and (acked.acked_at, acked.acked_by) == (4.0, "officer")
    assert store.inbound_one(L1, 9) is None
    assert store.count_rows("inbox", L1, "acked_at IS NULL") == 1


# ---- held frames -------------------------------------------------------------------------


def test_held_frames_are_kept_once_and_taken_once(store: Store) -> None:
    with store.transaction():
        store.hold(L1, 5, b"first copy")
        store.hold(L1, 5, b"second copy")
    assert store.is_held(L1, 5)
    assert not store.is_held(L1, 6)
    assert not store.is_held(L2, 5)
    with store.transaction():
        assert store.take_held(L1, 5) == b"first copy"
        assert store.take_held(L1, 5) is None
    assert not store.is_held(L1, 5)


# ---- counters, meta, invitations, lines, mailboxes ---------------------------------------


def test_counters_accumulate_by_name(store: Store) -> None:
    with store.transaction():
        store.count("decrypt_error")
        store.count("decrypt_error")
        store.count("duplicate", by=5)
    assert store.counters() == {"decrypt_error": 2, "duplicate": 5}


def test_meta_values_are_replaced(store: Store) -> None:
    with store.transaction():
        store.set_meta("k", b"one")
        store.set_meta("k", b"two")
    assert store.get_meta("k") == b"two"
    assert store.get_meta("absent") is None


def test_invitations_are_pending_until_used_and_then_lose_their_secrets(store: Store) -> None:
    with store.transaction():
        store.add_invitation(L1, "moscow", b"blob", b"secrets", 1.0)
        store.add_invitation(L2, "", b"blob2", b"secrets2", 2.0)
    assert store.get_invitation(L1) == ("moscow", b"blob", b"secrets", False)
    assert [lid for lid, _, _ in store.pending_invitations()] == [L1, L2]
    assert store.name_taken("moscow")
    with store.transaction():
        store.mark_invitation_used(L1)
    assert store.get_invitation(L1) == ("moscow", b"blob", b"", True)
    assert [lid for lid, _, _ in store.pending_invitations()] == [L2]
    assert not store.name_taken("moscow")
    assert store.get_invitation(b"\x09" * 16) is None


def test_lines_are_found_by_name_or_hex_prefix_and_updated(store: Store) -> None:
    with store.transaction():
        store.add_line(line_row(L1, "moscow", 1.0))
        store.add_line(line_row(L2, "paris", 2.0))
    assert store.get_line(L1) == line_row(L1, "moscow", 1.0)
    assert store.name_taken("paris")
    found = store.find_line("paris")
    assert found is not None and found.line_id == L2
    by_hex = store.find_line(L1.hex()[:6])
    assert by_hex is not None and by_hex.name == "moscow"
    assert store.find_line("") is None
    assert store.find_line("nowhere") is None
    with store.transaction():
        store.update_line(L1, next_seq=7, state="pairing")
    updated = store.get_line(L1)
    assert updated is not None and (updated.next_seq, updated.state) == (7, "pairing")
    assert [r.name for r in store.list_lines()] == ["moscow", "paris"]


def test_line_names_are_unique(store: Store) -> None:
    with store.transaction():
        store.add_line(line_row(L1, "moscow"))
    with pytest.raises(StorageError), store.transaction():
        store.add_line(line_row(L2, "moscow"))


def test_mailboxes_and_peer_mailboxes(store: Store) -> None:
    with store.transaction():
        store.add_mailbox(L1, "ws://a", b"r" * 16, b"sealed-recv")
        store.add_peer_mailbox(L1, "ws://a", b"s" * 16, b"sealed-send")
        store.add_peer_mailbox(L1, "ws://a", b"t" * 16, b"sealed-send-2")  # replaces
        store.add_peer_mailbox(L2, "ws://b", b"u" * 16, b"sealed-send-3")
    assert store.mailboxes() == [(L1, "ws://a", b"r" * 16, b"sealed-recv")]
    assert store.peer_mailboxes(L1) == [(L1, "ws://a", b"t" * 16, b"sealed-send-2")]
    assert len(store.peer_mailboxes()) == 2


def test_a_removed_circuit_retires_our_mailbox_and_forgets_the_peers(store: Store) -> None:
    one_circuit_per_line(store)
    with store.transaction():
        store.add_mailbox(L1, URL, b"r" * 16, b"sealed")
        store.add_outbound(L1, 1, "msg", b"f", 1.0)
        store.remove_circuit(L1, URL, at=5.0, retire=True)
    assert store.mailboxes() == []  # no longer the line's circuit: the relay may be added again
    assert store.mailboxes(retired=True) == [(L1, URL, b"r" * 16, b"sealed")]  # still read
    assert [url for line_id, url, _, _ in store.peer_mailboxes() if line_id == L1] == []
    assert all(line_id != L1 for line_id, _, _ in store.unsent())  # nothing more is sent there
    with store.transaction():
        store.add_mailbox(L1, URL, b"n" * 16, b"fresh")  # added again: a fresh mailbox
    assert store.mailboxes() == [(L1, URL, b"n" * 16, b"fresh")]
    with store.transaction():
        assert store.prune_retired(before=5.0) == 0  # retired at 5.0: still read
        assert store.prune_retired(before=6.0) == 1
    assert store.mailboxes(retired=True) == []


def test_a_circuit_the_peer_removed_forgets_our_mailbox_there(store: Store) -> None:
    one_circuit_per_line(store)
    with store.transaction():
        store.add_mailbox(L1, URL, b"r" * 16, b"sealed")
        store.remove_circuit(L1, URL, at=5.0, retire=False)
    assert store.mailboxes() == [] and store.mailboxes(retired=True) == []


def test_durable_commits_count_only_flushed_commits_that_wrote(store: Store) -> None:
    """The receiver acknowledges frames applied without a flush only once this count moved
    past its value at their commit (receiver.py): a commit without flush, or one that wrote
    nothing (nothing reached the WAL, so nothing was flushed), must not move it."""
    start = store.durable_commits
    with store.transaction(durable=False):
        store.count("relaxed")
    assert store.durable_commits == start
    with store.transaction():
        store.counters()  # a read only
    assert store.durable_commits == start
    store.flush()
    assert store.durable_commits == start + 1
    with store.transaction():
        store.count("durable")
    assert store.durable_commits == start + 2
    assert store.counters() == {"relaxed": 1, "durable": 1}
