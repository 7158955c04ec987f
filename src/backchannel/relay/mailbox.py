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

*Catch-up.* After a storage error the relay cannot be sure the cursor is right: a frame
whose commit succeeded but whose reply was lost was never pushed, and later frames pushed
past it. :meth:`PushWindow.rewind` sets the cursor back to 0, so the mailbox is read again
from its oldest frame; rows still awaiting their ACK here are skipped (:meth:`awaits`,
:meth:`skip`), every other stored row is pushed. The mailbox depth bounds the re-read.

*Redelivery.* A DELIVER can be lost without the connection dying (a faulty middlebox, a
proxy that drops a WebSocket message). So a frame pushed but not acknowledged within
``redeliver_seconds`` is pushed again on the same subscription, with the same msg_id (the
station drops the copy by sequence number), and again every ``redeliver_seconds`` until it
is acknowledged, expires or the subscription ends. The window keeps its frames in order of
their last push, so the frames due are always a prefix and the next deadline is the first's.

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


@dataclass
class _Pushed:
    seq: int
    stored_at: float  # wall clock, for expiry
    pushed_at: float  # monotonic, for redelivery


class PushWindow:
    """Flow control for one subscription: what has been pushed and not yet acknowledged.

    Times: ``stored_at`` is the store's wall-clock timestamp (expiry compares it); every
    ``now`` given to the push and redelivery methods is a monotonic clock reading.
    """

    def __init__(self, size: int, redeliver_seconds: float | None = None) -> None:
        if size < 1:
            raise ValueError("a push window must hold at least one frame")
        if redeliver_seconds is not None and not redeliver_seconds > 0:
            raise ValueError("redeliver_seconds must be greater than 0 (or None: never)")
        self.size = size
        self.redeliver_seconds = redeliver_seconds
        #: Highest sequence number pushed on this subscription (0: nothing yet).
        self.cursor = 0
        # msg_id -> its push record, in order of the latest push (oldest first).
        self._unacked: dict[bytes, _Pushed] = {}

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def fetch_limit(self) -> int:
        """How many further rows (after ``cursor``) may be pushed right now."""
        return max(0, self.size - len(self._unacked))

    def pushed(self, seq: int, msg_id: bytes, stored_at: float, now: float) -> None:
        """Record one pushed row; rows must be pushed in increasing sequence order."""
        if seq <= self.cursor:
            raise ValueError(f"row {seq} pushed out of order (cursor {self.cursor})")
        self.cursor = seq
        self._unacked.pop(msg_id, None)  # (re-stored after an ACK: the newest push counts)
        self._unacked[msg_id] = _Pushed(seq, stored_at, now)

    def awaits(self, msg_id: bytes, seq: int) -> bool:
        """Was row ``seq`` pushed here and not yet acknowledged?"""
        pushed = self._unacked.get(msg_id)
        return pushed is not None and pushed.seq == seq

    def skip(self, seq: int) -> None:
        """Move the cursor over row ``seq`` (read again during a catch-up, already awaited)."""
        self.cursor = max(self.cursor, seq)

    def rewind(self) -> None:
        """Read the mailbox again from its oldest frame (a catch-up after a storage error)."""
        self.cursor = 0

    def seq_of(self, msg_id: bytes) -> int | None:
        """The sequence number of a frame pushed here and awaiting its ACK (None: not awaited)."""
        pushed = self._unacked.get(msg_id)
        return None if pushed is None else pushed.seq

    def acked(self, msg_id: bytes) -> bool:
        """Free the slot of an acknowledged frame; False if it was not pushed here."""
        return self._unacked.pop(msg_id, None) is not None

    def forget(self, msg_id: bytes, seq: int) -> bool:
        """Free the slot of row ``seq``, found no longer stored when it was due again.

        Only that row: if the same payload was stored anew meanwhile (a new row, pushed as
        such), its slot stays.
        """
        pushed = self._unacked.get(msg_id)
        if pushed is None or pushed.seq != seq:
            return False
        del self._unacked[msg_id]
        return True

    def forget_expired(self, cutoff: float) -> int:
        """Free slots of frames the expiry sweep deleted: they can never be acknowledged."""
        gone = [m for m, p in self._unacked.items() if p.stored_at < cutoff]
        for msg_id in gone:
            del self._unacked[msg_id]
        return len(gone)

    # ---- redelivery --------------------------------------------------------------------

    def next_redelivery(self) -> float | None:
        """When the oldest unacknowledged push becomes due again (None: nothing to wait for)."""
        if self.redeliver_seconds is None or not self._unacked:
            return None
        first = next(iter(self._unacked.values()))
        return first.pushed_at + self.redeliver_seconds

    def due(self, now: float) -> list[tuple[int, bytes]]:
        """``(seq, msg_id)`` of every frame pushed at least ``redeliver_seconds`` ago, oldest first."""
        if self.redeliver_seconds is None:
            return []
        out: list[tuple[int, bytes]] = []
        for msg_id, pushed in self._unacked.items():
            if now - pushed.pushed_at < self.redeliver_seconds:
                break  # ordered by push time: the rest are younger
            out.append((pushed.seq, msg_id))
        return out

    def redelivered(self, msg_id: bytes, seq: int, now: float) -> bool:
        """Restart the clock of row ``seq`` because it is pushed again at ``now``.

        False (and nothing changes) if that row is no longer awaited here: it was
        acknowledged meanwhile, or the same payload was stored and pushed anew as another row.
        The caller pushes the frame only on True. A server whose connection is still busy
        writing earlier frames may also call this without pushing: the earlier copy is not
        lost, only queued, so its clock starts again.
        """
        pushed = self._unacked.get(msg_id)
        if pushed is None or pushed.seq != seq:
            return False
        del self._unacked[msg_id]
        pushed.pushed_at = now
        self._unacked[msg_id] = pushed  # to the end: the order stays "by latest push"
        return True
