"""The station's durable store (SQLite, WAL, ``synchronous=FULL``), in rooms by concern.

This package is the only place that speaks SQL for the station. :class:`Store` is one object
over one connection, composed of rooms that each own a few tables:

- :mod:`.base` — opening, migrating (numbered ``schema/NNN_*.sql``), transactions, meta, counters;
- :mod:`.lines` — invitations, lines, circuits (our and the peer's mailboxes), proposals;
- :mod:`.messages` — outbox, inbox, frames held ahead of a gap;
- :mod:`.record` — the hash-chained entries, checkpoints, drafts awaiting release;
- :mod:`.alarms` — alarms; :mod:`.operators` — operators, console sessions, audit;
- :mod:`.cover` — each line's own cover traffic setting.

Every room reads rows by column name (:mod:`.rows`); a transaction opened through any room
covers all of them, since they share the connection.
"""

from __future__ import annotations

from backchannel.station.store.alarms import AlarmsRoom
from backchannel.station.store.base import Committed
from backchannel.station.store.cover import CoverRoom
from backchannel.station.store.lines import LinesRoom
from backchannel.station.store.messages import MessagesRoom
from backchannel.station.store.operators import OperatorsRoom
from backchannel.station.store.record import RecordRoom
from backchannel.station.store.rows import (
    AlarmRow,
    AuditRow,
    ConsoleSessionRow,
    DraftRow,
    EntryRow,
    InboxRow,
    InvitationRow,
    LineRow,
    MailboxRow,
    OperatorRow,
    OutboxRow,
    PeerMailboxRow,
    PendingInvitationRow,
    ProposalRow,
    SendKeyRow,
)

__all__ = [
    "AlarmRow",
    "AuditRow",
    "Committed",
    "ConsoleSessionRow",
    "DraftRow",
    "EntryRow",
    "InboxRow",
    "InvitationRow",
    "LineRow",
    "MailboxRow",
    "OperatorRow",
    "OutboxRow",
    "PeerMailboxRow",
    "PendingInvitationRow",
    "ProposalRow",
    "SendKeyRow",
    "Store",
]


class Store(LinesRoom, MessagesRoom, RecordRoom, AlarmsRoom, OperatorsRoom, CoverRoom):
    """The station's database: every room over one connection (see the package docstring)."""
