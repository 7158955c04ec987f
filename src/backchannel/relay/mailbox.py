"""The relay's queue rules, as pure functions and one small state machine (no I/O).

Theory of operation
-------------------
A mailbox is a FIFO of opaque frames. Each stored frame has a *sequence number* (its row
order in the store, never reused) and a *message id*: the first 16 bytes of SHA-256 over
the payload. Because the id is derived from the bytes, a sender that retries after a lost
STORED reply stores nothing new: the store sees the same id and answers with it again.

A subscription pushes frames to the one connection that proved the receive key. It keeps a
:class:`PushWindow`: a *cursor* (the highest sequence number pushed so far) and the set of
frames pushed but not yet acknowledged. The server asks the window how many rows to fetch
next (never more than ``push_window`` unacknowledged at once), fetches the rows after the
cursor, and records them as pushed. An ACK frees a slot. A new subscription starts with a
fresh window (cursor 0), so after a reconnect every unacknowledged frame is pushed again.

Everything here decides; the server and the store carry the decisions out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from backchannel.proto.frames import ID_LEN


@dataclass(frozen=True)
class QueueLimits:
    """The abuse limits a store enforces inside its write transaction."""

    max_mailbox_depth: int
    max_mailboxes: int


def message_id(payload: bytes) -> bytes:
    """The id of a stored frame: content-derived, so retried SENDs are idempotent."""
    return hashlib.sha256(payload).digest()[:ID_LEN]


def depth_allows(depth: int, limits: QueueLimits) -> bool:
    """May a mailbox that holds ``depth`` frames take one more?"""
    return depth < limits.max_mailbox_depth


def quota_allows(mailboxes: int, limits: QueueLimits) -> bool:
    """May a relay that holds ``mailboxes`` mailboxes create one more?"""
    return mailboxes < limits.max_mailboxes


def expiry_cutoff(now: float, expiry_seconds: float) -> float:
    """Frames stored strictly before this instant have expired."""
    return now - expiry_seconds


class PushWindow:
    """Flow control for one subscription: what has been pushed and not yet acknowledged."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a push window must hold at least one frame")
        self.size = size
        #: Highest sequence number pushed on this subscription (0: nothing yet).
        self.cursor = 0
        # msg_id -> stored_at, in push order.
        self._unacked: dict[bytes, float] = {}

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def fetch_limit(self) -> int:
        """How many further rows (after ``cursor``) may be pushed right now."""
        return max(0, self.size - len(self._unacked))

    def pushed(self, seq: int, msg_id: bytes, stored_at: float) -> None:
        """Record one pushed row; rows must be pushed in increasing sequence order."""
        if seq <= self.cursor:
            raise ValueError(f"row {seq} pushed out of order (cursor {self.cursor})")
        self.cursor = seq
        self._unacked[msg_id] = stored_at

    def acked(self, msg_id: bytes) -> bool:
        """Free the slot of an acknowledged frame; False if it was not pushed here."""
        return self._unacked.pop(msg_id, None) is not None

    def forget_expired(self, cutoff: float) -> int:
        """Free slots of frames the expiry sweep deleted: they can never be acknowledged."""
        gone = [m for m, stored_at in self._unacked.items() if stored_at < cutoff]
        for msg_id in gone:
            del self._unacked[msg_id]
        return len(gone)
