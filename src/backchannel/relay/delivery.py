"""Subscriptions and delivery: pushing each mailbox's stored frames to the one who listens.

Theory of operation
-------------------
There is one :class:`Subscription` per mailbox that somebody listens to. A subscription
belongs to one connection; a later SUBSCRIBE to the same mailbox takes it over (the usual case
is a station reconnecting before the relay noticed its old connection died). Its pump task
reads rows after its cursor from the store and pushes them as DELIVER, never more than
``push_window`` unacknowledged; it wakes on new commits, on ACKs, and when a pushed frame has
waited ``redeliver_seconds`` for its ACK (then it pushes that frame again: a DELIVER may be lost
by a middlebox on a connection that stays up).

A frame stored while its subscription has pushed everything before it goes out straight from
memory (:meth:`Deliveries.stored`), saving a store read. After a storage error what was stored
and pushed is uncertain, so every subscription reads its mailbox again from its oldest
unacknowledged frame (a *catch-up*); so does one that learns of a frame behind its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

from backchannel.aio import TaskSet
from backchannel.clock import Clock
from backchannel.errors import BackchannelError, StorageError
from backchannel.proto import frames
from backchannel.relay.config import RelayConfig
from backchannel.relay.connection import RelayConnection
from backchannel.relay.database import Database
from backchannel.relay.mailbox import PushWindow

#: Sequence numbers of the latest acknowledged frames a subscription remembers, so that news of
#: a frame it already pushed and saw acknowledged (a late notification) sets off no catch-up.
RECENT_ACKS = 1024


@dataclass(eq=False)
class Subscription:
    recv_id: bytes
    conn: RelayConnection
    window: PushWindow
    #: Monotonic time this mailbox was last marked in use in the store.
    touched_at: float = 0.0
    #: Set to make the pump look again: at the store if ``dirty``, else only at its timer.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Rows after the cursor may be waiting to be pushed: the pump must read the store.
    dirty: bool = False
    task: asyncio.Task[None] | None = None
    #: True while the pump has pushed every stored row and is not reading the store: a
    #: newly stored frame can then be pushed straight from memory, saving a store read.
    caught_up: bool = False
    #: The pump must read the mailbox again from its oldest frame (not from the cursor): after
    #: a storage error a frame may be stored that was never pushed, behind the cursor.
    rewind: bool = False
    #: The latest acknowledged sequence numbers (at most RECENT_ACKS), oldest first.
    recent_acks: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_ACKS))

    def catch_up(self) -> None:
        """Read the whole mailbox again: push every stored frame not awaiting its ACK here."""
        self.rewind = True
        self.caught_up = False
        self.poke()

    def poke(self) -> None:
        """New work: there may be rows to read (a commit, a freed slot, a new subscription)."""
        self.dirty = True
        self.wake.set()

    def rearm(self) -> None:
        """The redelivery deadline may have moved earlier: the pump recomputes its timer."""
        self.wake.set()


class Deliveries:
    """Every live subscription of this relay process, and the pumps that feed them."""

    def __init__(
        self, config: RelayConfig, db: Database, clock: Clock, counters: dict[str, int], tasks: TaskSet
    ) -> None:
        self.config = config
        self._db = db
        self._clock = clock
        self._counters = counters
        self._tasks = tasks
        self.subs: dict[bytes, Subscription] = {}
        #: The largest DELIVER frame: what a pump reserves in a send buffer per row.
        self.frame_max = frames.HEADER.size + 2 * frames.ID_LEN + config.max_payload

    def __len__(self) -> int:
        return len(self.subs)

    def get(self, recv_id: bytes) -> Subscription | None:
        return self.subs.get(recv_id)

    # ---- subscriptions -----------------------------------------------------------------

    def subscribe(self, conn: RelayConnection, recv_id: bytes) -> Subscription:
        """Start pushing ``recv_id`` to ``conn``, taking over any earlier subscription."""
        old = self.subs.get(recv_id)
        if old is not None:
            self._counters["takeovers"] += 1
            self.end(old)
        window = PushWindow(self.config.push_window, self.config.redeliver_seconds)
        sub = Subscription(recv_id, conn, window, touched_at=self._clock.monotonic())
        self.subs[recv_id] = sub
        sub.task = self._tasks.spawn(self._pump(sub), "relay-pump")
        sub.poke()
        return sub

    def end(self, sub: Subscription) -> None:
        if self.subs.get(sub.recv_id) is sub:
            del self.subs[sub.recv_id]
        if sub.task is not None:
            sub.task.cancel()

    def end_connection(self, conn: RelayConnection) -> None:
        """The connection is gone: so are the subscriptions it still holds."""
        for recv_id in conn.receivers:
            sub = self.subs.get(recv_id)
            if sub is not None and sub.conn is conn:
                self.end(sub)

    def end_all(self) -> None:
        for sub in list(self.subs.values()):
            self.end(sub)

    # ---- what the requests tell -----------------------------------------------------------

    def stored(self, recv_id: bytes, seq: int, msg_id: bytes, payload: bytes) -> None:
        """A new frame was committed: push it from memory if its subscription has pushed
        everything before it and has room, else make the pump read the store."""
        sub = self.subs.get(recv_id)
        if sub is None:
            return
        deliver = frames.HEADER.size + 2 * frames.ID_LEN + len(payload)
        if sub.caught_up and sub.window.fetch_limit() > 0 and sub.conn.has_room(deliver):
            sub.window.pushed(seq, msg_id, self._clock.now(), self._clock.monotonic())
            sub.conn.push(frames.Deliver(recv_id, msg_id, payload))
            self._counters["delivered"] += 1
            if sub.window.unacked == 1:
                sub.rearm()  # the pump may be waiting without a redelivery timer
        else:
            sub.caught_up = False
            sub.poke()

    def acked(self, recv_id: bytes, msg_id: bytes) -> None:
        sub = self.subs.get(recv_id)
        if sub is None:
            return
        seq = sub.window.seq_of(msg_id)
        if seq is not None:
            sub.recent_acks.append(seq)
        # A freed slot matters only if rows wait beyond the cursor; when the pump has
        # caught up, every stored frame was pushed and new ones come by the fast path.
        if sub.window.acked(msg_id) and not sub.caught_up:
            sub.poke()

    def maybe_stranded(self, recv_id: bytes, seq: int, msg_id: bytes) -> None:
        """A frame is stored (a SEND of one already waiting, or one another process stored):
        if the live subscription does not await its ACK, it may never have been pushed: make
        sure it is."""
        sub = self.subs.get(recv_id)
        if sub is None or sub.window.awaits(msg_id, seq):
            return
        if 0 < seq <= sub.window.cursor and seq in sub.recent_acks:
            return  # pushed and acknowledged here already
        if seq <= 0 or seq <= sub.window.cursor:
            self._counters["catch_ups"] += 1
            sub.catch_up()  # behind the cursor: only a read from the start finds it
        else:
            sub.caught_up = False
            sub.poke()

    def catch_up_all(self) -> None:
        """After a storage error: what was stored and pushed is uncertain for every mailbox."""
        for sub in self.subs.values():
            self._counters["catch_ups"] += 1
            sub.catch_up()

    def expired(self, cutoff: float) -> None:
        """Frames stored before ``cutoff`` are gone: stop waiting for their ACKs."""
        for sub in list(self.subs.values()):
            if sub.window.forget_expired(cutoff):
                sub.poke()

    def in_use(self, every: float) -> list[bytes]:
        """Subscribed mailboxes not marked in use in the store for ``every`` seconds (now marked)."""
        now = self._clock.monotonic()
        due = []
        for sub in self.subs.values():
            if now - sub.touched_at >= every:
                sub.touched_at = now
                due.append(sub.recv_id)
        return due

    # ---- pumping -----------------------------------------------------------------------

    async def _pump(self, sub: Subscription) -> None:
        """Push stored frames of one mailbox, oldest first, within the window; push again
        those left unacknowledged for ``redeliver_seconds``."""
        store = self._db.store
        while True:
            await self._wait_for_work(sub)
            sub.wake.clear()
            try:
                await self._redeliver(sub)
                if self.subs.get(sub.recv_id) is not sub:
                    return
                if not sub.dirty:
                    continue  # only the timer (or a rearm): the store has nothing new
                sub.dirty = False
                sub.caught_up = False
                if sub.rewind:
                    sub.rewind = False
                    sub.window.rewind()
                while (limit := sub.window.fetch_limit()) > 0:
                    # Room in the connection's send buffer first: a client that does not read
                    # holds the pump here, not its frames in this process's memory.
                    room = await sub.conn.reserve(limit, self.frame_max)
                    try:
                        if self.subs.get(sub.recv_id) is not sub:
                            return
                        rows = await self._db.run(store.messages_after, sub.recv_id, sub.window.cursor, room)
                        if self.subs.get(sub.recv_id) is not sub:
                            return
                        self._db.health.succeeded()
                        now = self._clock.monotonic()
                        pushed = 0
                        for row in rows:
                            if sub.window.awaits(row.msg_id, row.seq):
                                sub.window.skip(row.seq)  # (a catch-up: already pushed, not acked)
                                continue
                            sub.window.pushed(row.seq, row.msg_id, row.stored_at, now)
                            sub.conn.push(frames.Deliver(row.recv_id, row.msg_id, row.payload))
                            pushed += 1
                    finally:
                        sub.conn.release(room, self.frame_max)
                    self._counters["delivered"] += pushed
                    if len(rows) < room:
                        sub.caught_up = not sub.dirty  # (dirty: a commit came during the read)
                        break
            except BackchannelError as exc:
                failure = exc if isinstance(exc, StorageError) else StorageError(str(exc))
                self._db.health.failed("a mailbox read", failure)  # (marks every subscription to catch up)
                await asyncio.sleep(1.0)
                sub.catch_up()

    async def _wait_for_work(self, sub: Subscription) -> None:
        """Until woken, or until the oldest unacknowledged push is due again."""
        deadline = sub.window.next_redelivery()
        if deadline is None:
            await sub.wake.wait()
            return
        delay = deadline - self._clock.monotonic()
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await sub.wake.wait()

    async def _redeliver(self, sub: Subscription) -> None:
        """Push again every frame whose last push has waited ``redeliver_seconds`` for an ACK."""
        now = self._clock.monotonic()
        due = sub.window.due(now)
        if not due:
            return
        if sub.conn.backlogged:
            # Earlier frames are still on their way out of this process: nothing was lost
            # yet, so start the clocks again rather than queue copies behind the originals.
            for seq, msg_id in due:
                sub.window.redelivered(msg_id, seq, now)
            return
        rows = await self._db.run(self._db.store.messages_by_seq, sub.recv_id, [seq for seq, _ in due])
        if self.subs.get(sub.recv_id) is not sub:
            return
        stored = {row.seq: row for row in rows}
        now = self._clock.monotonic()
        for seq, msg_id in due:
            row = stored.get(seq)
            if row is None:
                sub.window.forget(msg_id, seq)  # acknowledged or expired meanwhile
            elif sub.window.redelivered(msg_id, seq, now):
                # Out of room: the clock restarts and the frame is due again later.
                deliver = frames.Deliver(row.recv_id, row.msg_id, row.payload)
                if sub.conn.has_room(frames.HEADER.size + 2 * frames.ID_LEN + len(row.payload)):
                    sub.conn.push(deliver)
                    self._counters["redelivered"] += 1
