"""One group-commit batch of writes: the relay's storage rules, written once for every store.

A store supplies the few statements a batch needs in its own SQL dialect (:class:`Tables`,
run inside the batch's transaction); :class:`Batch` decides what each write does with them:
a frame already waiting is a duplicate (so retried SENDs are idempotent), a full mailbox
refuses, a delete of a frame not there is *absent*, a mailbox quota holds, and a colliding
random id is reported so the server can draw another, a frame for a mailbox that expired
is refused, and mailboxes nobody uses are deleted. Counts are cached for the batch, so the
limits cost one query per mailbox per batch.
"""

from __future__ import annotations

from typing import Protocol

from backchannel.relay import mailbox as rules
from backchannel.relay.mailbox import QueueLimits
from backchannel.relay.storage.base import (
    AddMailbox,
    DeleteMailbox,
    DeleteMessage,
    ExpireMailboxes,
    ExpireMessages,
    MailboxRecord,
    Outcome,
    PutMessage,
    TouchMailbox,
    WriteOp,
    WriteResult,
)


class Tables(Protocol):
    """The statements a batch runs, in one store's dialect, inside the batch's transaction."""

    def message_seq(self, recv_id: bytes, msg_id: bytes) -> int | None:
        """The sequence number of a stored frame; None if it is not stored."""
        ...

    def depth(self, recv_id: bytes) -> int: ...

    def insert_message(self, recv_id: bytes, msg_id: bytes, payload: bytes, now: float) -> int:
        """Store a frame; returns its new, never reused sequence number."""
        ...

    def delete_message(self, recv_id: bytes, msg_id: bytes) -> bool:
        """Delete a frame; False if it was not there."""
        ...

    def count_mailboxes(self) -> int: ...

    def insert_mailbox(self, record: MailboxRecord, now: float) -> bool:
        """Create a mailbox; False (and nothing written) if either of its ids is taken."""
        ...

    def expire(self, cutoff: float) -> int:
        """Delete every frame stored before ``cutoff``; returns how many."""
        ...

    def mailbox_exists(self, recv_id: bytes) -> bool: ...

    def touch_mailboxes(self, recv_ids: list[bytes], now: float) -> int:
        """Set ``used_at = now`` on these mailboxes; returns how many exist."""
        ...

    def expire_mailboxes(self, cutoff: float) -> int:
        """Delete mailboxes last used before ``cutoff`` that hold no frame; returns how many."""
        ...

    def delete_mailbox(self, recv_id: bytes) -> tuple[bool, int]:
        """Delete a mailbox's frames, then the mailbox: (did it exist, how many frames went)."""
        ...


class Batch:
    def __init__(self, tables: Tables, now: float, limits: QueueLimits) -> None:
        self._tables = tables
        self._now = now
        self._limits = limits
        self._depths: dict[bytes, int] = {}
        self._mailboxes: int | None = None

    def run(self, op: WriteOp) -> WriteResult:
        match op:
            case PutMessage(recv_id, payload):
                return self._put(recv_id, payload)
            case DeleteMessage(recv_id, msg_id):
                return self._delete(recv_id, msg_id)
            case AddMailbox(record):
                return self._add(record)
            case ExpireMessages(cutoff):
                count = self._tables.expire(cutoff)
                self._depths.clear()
                return WriteResult(Outcome.EXPIRED, count=count)
            case TouchMailbox(recv_id):
                found = self._tables.touch_mailboxes([recv_id], self._now)
                return WriteResult(Outcome.TOUCHED if found else Outcome.ABSENT)
            case ExpireMailboxes(cutoff, in_use):
                if in_use:
                    self._tables.touch_mailboxes(list(in_use), self._now)
                count = self._tables.expire_mailboxes(cutoff)
                self._depths.clear()
                self._mailboxes = None
                return WriteResult(Outcome.EXPIRED, count=count)
            case DeleteMailbox(recv_id):
                found, count = self._tables.delete_mailbox(recv_id)
                self._depths.pop(recv_id, None)  # (a later SEND in this batch finds no mailbox)
                if found and self._mailboxes is not None:
                    self._mailboxes -= 1
                return WriteResult(Outcome.MAILBOX_DELETED if found else Outcome.ABSENT, count=count)
        raise TypeError(f"not a write op: {op!r}")  # pragma: no cover

    def _put(self, recv_id: bytes, payload: bytes) -> WriteResult:
        msg_id = rules.message_id(payload)
        waiting = self._tables.message_seq(recv_id, msg_id)
        if waiting is not None:
            return WriteResult(Outcome.DUPLICATE, msg_id, count=waiting)
        depth = self._depths.get(recv_id)
        if depth is None:
            if not self._tables.mailbox_exists(recv_id):
                return WriteResult(Outcome.NO_MAILBOX, msg_id)
            depth = self._tables.depth(recv_id)
        if not rules.depth_allows(depth, self._limits):
            self._depths[recv_id] = depth
            return WriteResult(Outcome.MAILBOX_FULL, msg_id)
        seq = self._tables.insert_message(recv_id, msg_id, payload, self._now)
        self._depths[recv_id] = depth + 1
        return WriteResult(Outcome.STORED, msg_id, count=seq)

    def _delete(self, recv_id: bytes, msg_id: bytes) -> WriteResult:
        if not self._tables.delete_message(recv_id, msg_id):
            return WriteResult(Outcome.ABSENT, msg_id)
        if recv_id in self._depths:
            self._depths[recv_id] -= 1
        return WriteResult(Outcome.DELETED, msg_id)

    def _add(self, record: MailboxRecord) -> WriteResult:
        if self._mailboxes is None:
            self._mailboxes = self._tables.count_mailboxes()
        if not rules.quota_allows(self._mailboxes, self._limits):
            return WriteResult(Outcome.QUOTA)
        if not self._tables.insert_mailbox(record, self._now):
            return WriteResult(Outcome.ID_TAKEN)
        self._mailboxes += 1
        return WriteResult(Outcome.CREATED)
