"""What the relay server needs from a durable store (SQLite, or PostgreSQL in production).

Stores are synchronous: the server calls them from one dedicated worker thread, so an
implementation needs no locking of its own and may block on disk or network freely.
Writes arrive in batches (*group commit*): :meth:`MailboxStore.apply` runs a whole batch in
one transaction, so one fsync covers many SENDs and ACKs. A batch is atomic: either every
operation in it commits, or ``apply`` raises ``StorageError`` and none does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from backchannel.relay.mailbox import QueueLimits


@dataclass(frozen=True)
class MailboxRecord:
    """One mailbox: two unrelated ids and the two public keys that authorise their use."""

    recv_id: bytes
    send_id: bytes
    recv_key: bytes
    send_key: bytes
    created_at: float
    #: Last subscribed (or created); a mailbox unused past ``mailbox_expiry_seconds`` goes.
    used_at: float = 0.0


@dataclass(frozen=True)
class StoredMessage:
    """One frame waiting in a mailbox; ``seq`` orders a mailbox FIFO and is never reused."""

    seq: int
    recv_id: bytes
    msg_id: bytes
    payload: bytes
    stored_at: float


@dataclass(frozen=True)
class AddMailbox:
    mailbox: MailboxRecord


@dataclass(frozen=True)
class PutMessage:
    recv_id: bytes
    payload: bytes


@dataclass(frozen=True)
class DeleteMessage:
    recv_id: bytes
    msg_id: bytes


@dataclass(frozen=True)
class ExpireMessages:
    """Delete every frame stored before ``cutoff`` (any mailbox)."""

    cutoff: float


@dataclass(frozen=True)
class TouchMailbox:
    """Mark a mailbox as in use now (it was just subscribed)."""

    recv_id: bytes


@dataclass(frozen=True)
class ExpireMailboxes:
    """Mark ``in_use`` mailboxes as used now, then delete every mailbox last used before
    ``cutoff`` that holds no frame: a mailbox nobody subscribes to gives its quota back."""

    cutoff: float
    in_use: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class DeleteMailbox:
    """Delete a mailbox and every frame in it (a DELETE by its receiver: a rotated mailbox)."""

    recv_id: bytes


WriteOp = (
    AddMailbox | PutMessage | DeleteMessage | ExpireMessages | TouchMailbox | ExpireMailboxes | DeleteMailbox
)


class Outcome(Enum):
    CREATED = "created"
    ID_TAKEN = "id_taken"  # a random mailbox id collided: astronomically rare, retry
    QUOTA = "quota"
    STORED = "stored"
    DUPLICATE = "duplicate"  # the same payload already waits in that mailbox (count: its seq)
    MAILBOX_FULL = "mailbox_full"
    DELETED = "deleted"
    ABSENT = "absent"  # DeleteMessage of a frame that is not there (already acked)
    EXPIRED = "expired"
    NO_MAILBOX = "no_mailbox"  # PutMessage into a mailbox that no longer exists (expired)
    TOUCHED = "touched"
    #: DeleteMailbox: the mailbox and its frames are gone (``count``: how many frames went).
    MAILBOX_DELETED = "mailbox_deleted"


@dataclass(frozen=True)
class WriteResult:
    outcome: Outcome
    msg_id: bytes = b""
    #: For STORED: the new row's sequence number; for DUPLICATE: the waiting row's. For
    #: EXPIRED: how many rows (frames, or mailboxes for ExpireMailboxes) went.
    count: int = 0


class MailboxStore(Protocol):
    """The relay's durable state. All methods may raise ``StorageError``."""

    def apply(self, ops: Sequence[WriteOp], now: float, limits: QueueLimits) -> list[WriteResult]:
        """Run ``ops`` in order in one transaction; one result per op, in the same order."""
        ...

    def mailbox_by_recv(self, recv_id: bytes) -> MailboxRecord | None: ...

    def mailbox_by_send(self, send_id: bytes) -> MailboxRecord | None: ...

    def messages_after(self, recv_id: bytes, after_seq: int, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` frames of one mailbox with ``seq > after_seq``, oldest first."""
        ...

    def messages_by_seq(self, recv_id: bytes, seqs: Sequence[int]) -> list[StoredMessage]:
        """The frames of one mailbox with these sequence numbers that are still stored, oldest first."""
        ...

    def depth(self, recv_id: bytes) -> int:
        """How many frames wait in a mailbox."""
        ...

    def depth_summary(self) -> tuple[int, int, int]:
        """Frames waiting in all mailboxes, mailboxes held, and frames in the deepest mailbox."""
        ...

    def find_messages(self, keys: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], int]:
        """The sequence numbers of the frames ``(recv_id, msg_id)`` that are stored (absent ones
        are left out): how the relay learns the outcome of a commit whose reply it lost."""
        ...

    def close(self) -> None: ...
