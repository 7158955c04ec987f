"""The rows the station's store hands out, each built from its columns *by name*.

Dataclasses for the wide rows a caller reads field by field; named tuples for the narrow
ones callers unpack (``for line_id, url, recv_id, key in store.mailboxes()``), so positional
code keeps working while new code says ``row.url``. :func:`columns` and :func:`build` are the
one place a row meets SQL: the SELECT names exactly the row's fields, and each field is taken
from the result by its column name, never by its position in the table.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")


def plain(value: Any) -> Any:
    """SQLite BLOBs as ``bytes`` (a driver may hand out ``memoryview``)."""
    return bytes(value) if isinstance(value, memoryview) else value


def names(kind: type[Any]) -> list[str]:
    if is_dataclass(kind):
        return [f.name for f in fields(kind)]
    return list(kind._fields)


def columns(kind: type[Any], alias: str = "") -> str:
    """The SELECT list for ``kind``: its field names, in its order (``alias.`` prefixed)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + name for name in names(kind))


def build(kind: type[T], row: sqlite3.Row, **replace: Any) -> T:
    """A ``kind`` from a result row, each field taken by its column name."""
    values = {name: plain(row[name]) for name in names(kind)}
    values.update(replace)
    return kind(**values)


@dataclass(frozen=True)
class LineRow:
    line_id: bytes
    name: str
    role: int
    state: str
    peer_name: str
    peer_identity: bytes
    peer_signing: bytes
    keys_sealed: bytes
    session_pickle: str
    next_seq: int
    delivered_upto: int
    tx_count0: int
    tx_head0: bytes
    tx_count1: int
    tx_head1: bytes
    on_record: int
    verified_at: float | None
    created_at: float
    last_contact: float | None
    peer_pq: bytes | None = None


@dataclass(frozen=True)
class OutboxRow:
    line_id: bytes
    seq: int
    kind: str
    precedence: str | None
    body_sealed: bytes | None
    frame: bytes
    created_at: float
    relayed_at: float | None
    delivered_at: float | None
    acked_at: float | None
    acked_by: str | None
    relayed_all: int = 0
    escalated_at: float | None = None


@dataclass(frozen=True)
class InboxRow:
    line_id: bytes
    seq: int
    precedence: str
    body_sealed: bytes
    sent_at: float
    received_at: float
    acked_at: float | None
    acked_by: str | None


@dataclass(frozen=True)
class AlarmRow:
    id: str
    kind: str
    line_id: bytes | None
    subject: str
    message: str
    raised_at: float
    cleared_at: float | None
    acked_at: float | None
    acked_by: str | None


class InvitationRow(NamedTuple):
    local_name: str
    blob: bytes
    secrets_sealed: bytes
    used: bool


class PendingInvitationRow(NamedTuple):
    line_id: bytes
    local_name: str
    created_at: float


class MailboxRow(NamedTuple):
    """One of our own mailboxes (we receive there)."""

    line_id: bytes
    url: str
    recv_id: bytes
    recv_key_sealed: bytes


class PeerMailboxRow(NamedTuple):
    """One of the peer's mailboxes (we send there): a circuit of the line."""

    line_id: bytes
    url: str
    send_id: bytes
    send_key_sealed: bytes


class ProposalRow(NamedTuple):
    id: str
    line_id: bytes
    url: str
    send_id: bytes
    send_key_sealed: bytes
    proposed_at: float


class EntryRow(NamedTuple):
    direction: int
    seq: int
    hash: bytes
    entry_sealed: bytes
    at: float


class SendKeyRow(NamedTuple):
    """What an idempotency key names: a sent message (``seq``) or a held draft (``draft_id``)."""

    line_id: bytes
    seq: int | None
    draft_id: str | None
    precedence: str
    body_sealed: bytes


class DraftRow(NamedTuple):
    id: str
    line_id: bytes
    precedence: str
    body_sealed: bytes
    drafted_by: str
    created_at: float
    released_by: str | None
    released_at: float | None
    seq: int | None


class OperatorRow(NamedTuple):
    name: str
    role: str
    password_hash: str
    created_at: float
    failed_logins: int
    locked_until: float | None
    last_login: float | None


class ConsoleSessionRow(NamedTuple):
    operator: str
    role: str
    csrf: str
    created_at: float
    expires_at: float


class AuditRow(NamedTuple):
    id: int
    at: float
    operator: str
    action: str
    detail: str
