"""Mailbox records, read from the store once and then kept in memory.

A mailbox record (its two ids and two public keys) never changes after CREATE, so SUBSCRIBE
and AUTH_SEND find it in a bounded cache; the cache is cleared when mailboxes expire, so the
record of a deleted mailbox is not found again.
"""

from __future__ import annotations

import enum

from backchannel.errors import BackchannelError, StorageError
from backchannel.relay.database import Database
from backchannel.relay.storage.base import MailboxRecord

#: Immutable mailbox records cached in memory (the cache is cleared when mailboxes expire).
MAILBOX_CACHE = 65_536


class Unreadable(enum.Enum):
    """A mailbox lookup that failed in the store (as opposed to "no such mailbox")."""

    UNREADABLE = "unreadable"


UNREADABLE = Unreadable.UNREADABLE


class MailboxRecords:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._by_recv: dict[bytes, MailboxRecord] = {}
        self._by_send: dict[bytes, MailboxRecord] = {}

    async def find(self, mailbox_id: bytes, *, by_send: bool) -> MailboxRecord | Unreadable | None:
        """The mailbox record; None if there is no such mailbox; UNREADABLE if the store failed."""
        cache = self._by_send if by_send else self._by_recv
        record = cache.get(mailbox_id)
        if record is not None:
            return record
        store = self._db.store
        lookup = store.mailbox_by_send if by_send else store.mailbox_by_recv
        try:
            record = await self._db.run(lookup, mailbox_id)
        except BackchannelError as exc:
            failure = exc if isinstance(exc, StorageError) else StorageError(str(exc))
            self._db.health.failed("a mailbox record read", failure)
            return UNREADABLE
        if record is not None:
            self.remember(record)
        return record

    def remember(self, record: MailboxRecord) -> None:
        if len(self._by_recv) >= MAILBOX_CACHE:
            self.forget_all()
        self._by_recv[record.recv_id] = record
        self._by_send[record.send_id] = record

    def forget(self, recv_id: bytes) -> None:
        """One mailbox was deleted (DELETE): its record must not be found again."""
        record = self._by_recv.pop(recv_id, None)
        if record is not None:
            self._by_send.pop(record.send_id, None)

    def forget_all(self) -> None:
        """Mailboxes were deleted: their records must not be found again."""
        self._by_recv.clear()
        self._by_send.clear()
