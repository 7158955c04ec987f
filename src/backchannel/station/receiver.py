"""Receiving: frames from every relay, in batches, stored before anything is acknowledged.

Theory of operation
-------------------
Frames from every relay land in one queue. :meth:`Receiver.run` takes them in batches, opens
each circuit frame and reassembles envelopes (:mod:`backchannel.station.inbound`: the mailbox
names the line, the fragments of an entry are acknowledged only once the whole entry is
stored) and, inside one transaction per batch, authenticates each envelope, drops duplicates
(after noting which circuit the copy came through), holds early frames, decrypts the next in-order
frames, applies receipts, stores messages and the record, and seals a cumulative *delivered*
receipt. Only after the commit are the receipts queued and the frames acknowledged to their
relays, which then delete them. A storage failure leaves nothing behind and the batch comes
round again; a bug on one frame costs only that frame (it is counted and dropped).

A batch that only applies the peer's receipts (*delivered*, *acknowledged*) and sends nothing
is committed without a flush: it is off the critical path of ``send --wait delivered``, whose
waiter it wakes. (SQLite decides the flush before the transaction starts, and what a batch
holds is known only once it is decrypted: so the batch commits without a flush, and one that
needs it is followed at once by ``Store.flush``, before anything of it leaves or is woken; a
batch with a frame larger than a receipt's is flushed at its own commit, as before.)
Its frames are acknowledged to their relays only once a
later flushed commit covers it (the next send's, another batch's, or one made after
``SYNC_DELAY`` or ``SYNC_FRAMES``), so a power cut before that loses nothing: the relays still hold the frames
and push them again, and the receipts are applied again from them. The rule that matters
holds unchanged: nothing leaves this station (a frame, a receipt) before a flush covers it.

This module is the shell around the line engine's receive event
(:func:`backchannel.proto.engine.receiving.receive`): per frame it calls the engine, then
applies the effects in order (to the store, the in-memory lines, the health watch and the
waiters), keeping the after-commit ones (send, gap and alarm changes) until the batch commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from backchannel.clock import Clock, ms
from backchannel.errors import BackchannelError, InvitationAlreadyUsed, MisaddressedFrame, RemoteError
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import receiving
from backchannel.proto.engine.receiving import MAX_HELD
from backchannel.proto.envelope import Kind, Sealed
from backchannel.proto.payloads import Delivered
from backchannel.proto.wire import Cover
from backchannel.station.circuits import CircuitChanges
from backchannel.station.inbound import SMALL_ENVELOPE, Inbound, Opened, Taken
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.liveline import LiveLine
from backchannel.station.monitor import Monitor
from backchannel.station.outbox import Outbox
from backchannel.station.pairing import Pairing
from backchannel.station.recorder import Recorder
from backchannel.station.relay_link import Delivery
from backchannel.station.store import Store

__all__ = ["MAX_HELD", "RECEIVE_BATCH", "Receiver"]

log = logging.getLogger("backchannel.station")

RECEIVE_BATCH = 512

#: The size of an envelope in the smallest padding bucket (every receipt's).
SMALL_FRAME = SMALL_ENVELOPE

#: How long frames applied by a relaxed commit may wait for a flushed commit to cover them
#: before the receiver makes one itself (their relays hold them meanwhile).
SYNC_DELAY = 0.02

#: ... or once this many wait (a relay pushes at most ``push_window`` unacknowledged frames
#: per mailbox, so a long wait for a flush would stall its pushes).
SYNC_FRAMES = 64

#: Effects a batch may carry and still be committed without a flush: receipts and in-memory
#: bookkeeping that a power cut would only redo from the relays' copies. Anything that stores
#: a message, holds a frame or makes the station send forces the flush.
RELAXABLE: tuple[type[fx.Effect], ...] = (
    fx.Count,
    fx.StoreEntry,
    fx.CheckSeen,
    fx.MarkDelivered,
    fx.WakeDelivered,
    fx.MarkAcknowledged,
    fx.WakeAcknowledged,
    fx.GapChanged,
    fx.ClearDeadline,
)

Item = tuple[bytes, int]


class StoreLedger:
    """The engine's read-only questions, answered by the store inside the batch's transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def is_held(self, line_id: bytes, seq: int) -> bool:
        return self._store.is_held(line_id, seq)

    def held(self, line_id: bytes, seq: int) -> bytes | None:
        frame = self._store.take_held(line_id, seq)
        if frame is not None:
            self._store.hold(line_id, seq, frame)  # (read only: ReleaseHeld removes it)
        return frame

    def held_count(self, line_id: bytes) -> int:
        return self._store.held_count(line_id)


class _Batch:
    """What one batch owes after its commit: frames to send, actions to take."""

    def __init__(self) -> None:
        self.outgoing: list[Item] = []
        self.receipts_due: set[bytes] = set()
        self.touched: set[bytes] = set()
        self.after: list[Callable[[], object]] = []
        #: Receipts sealed in the batch, for the outbox once it committed.
        self.frames: list[tuple[bytes, int, bytes]] = []
        #: Something in the batch needs the commit flushed before anything follows it.
        self.must_flush = False
        #: The circuit layer's part: which frames to acknowledge after the commit.
        self.taken = Taken()


class Receiver:
    def __init__(
        self,
        lines: Lines,
        links: Links,
        outbox: Outbox,
        monitor: Monitor,
        recorder: Recorder,
        circuits: CircuitChanges,
        pairing: Pairing,
        store: Store,
        clock: Clock,
    ) -> None:
        self._lines = lines
        self._links = links
        self._outbox = outbox
        self._monitor = monitor
        self._recorder = recorder
        self._circuits = circuits
        self._pairing = pairing
        self._store = store
        self._clock = clock
        self._ledger = StoreLedger(store)
        self.inbound = Inbound(lines, links, outbox.keys, monitor.copy_arrived)
        #: What the last committed batch may acknowledge to its relays (its own frames, minus
        #: fragments of entries still incomplete, plus earlier fragments of entries it completed).
        self.acks_due: list[Delivery] = []
        #: Frames applied by relaxed commits, not yet acknowledged: (the store's
        #: ``durable_commits`` when committed, the frame).
        self._unsynced: list[tuple[int, Delivery]] = []
        self._relaxed = False

    async def run(self) -> None:
        deliveries = self._links.deliveries
        while True:
            try:
                async with asyncio.timeout(SYNC_DELAY if self._unsynced else None):
                    batch = [await deliveries.get()]
            except TimeoutError:
                self._sync()
                continue
            while len(batch) < RECEIVE_BATCH and not deliveries.empty():
                batch.append(deliveries.get_nowait())
            try:
                newly_sendable = self.receive_batch(batch, may_relax=True)
            except BackchannelError as exc:
                # Nothing of the batch was kept or acknowledged; try the same frames again.
                log.error("a batch of %d frames was not stored (%s); retrying", len(batch), exc)
                await asyncio.sleep(0.5)
                for delivery in batch:
                    deliveries.put_nowait(delivery)
                continue
            except Exception:
                # A bug, not bad input (that is a RemoteError, counted per frame). Never let it
                # stop the station: take the frames one by one and drop only the one that fails.
                log.exception("a batch of %d frames hit an internal error", len(batch))
                newly_sendable, done, requeued = self.receive_one_by_one(batch)
                self._release([d for d in batch if not any(d is r for r in requeued)])
            else:
                self._release(batch)
                done = self.acks_due
            self._outbox.enqueue(newly_sendable)  # receipts leave before the relay acks
            if self._relaxed:
                epoch = self._store.durable_commits
                self._unsynced += [(epoch, delivery) for delivery in done]
                if len(self._unsynced) >= SYNC_FRAMES:
                    self._sync()
            else:
                for delivery in done:
                    self._links.ack(delivery)
            self._ack_synced()
            self._links.check_floods()

    def _ack_synced(self) -> None:
        """Acknowledge the frames of relaxed commits that a flushed commit has covered since."""
        if not self._unsynced:
            return
        now = self._store.durable_commits
        covered = [delivery for epoch, delivery in self._unsynced if epoch < now]
        if covered:
            self._unsynced = [(epoch, delivery) for epoch, delivery in self._unsynced if epoch >= now]
            for delivery in covered:
                self._links.ack(delivery)

    def _sync(self) -> None:
        """No flushed commit came within ``SYNC_DELAY`` (or ``SYNC_FRAMES`` wait): make one,
        then acknowledge."""
        self._ack_synced()
        if not self._unsynced:
            return
        try:
            with self._store.transaction():
                self._store.set_meta("synced_at", str(self._clock.now()).encode("ascii"))
        except BackchannelError as exc:
            log.error("could not flush applied receipts (%s); their relays keep them", exc)
            return
        self._ack_synced()

    @staticmethod
    def _release(batch: list[Delivery]) -> None:
        """Give each frame's link its room back (the payloads are no longer held here)."""
        for delivery in batch:
            if delivery.link is not None:
                delivery.link.processed(delivery)

    def receive_one_by_one(self, batch: list[Delivery]) -> tuple[list[Item], list[Delivery], list[Delivery]]:
        """Returns what to send, the frames that may be acknowledged to their relays, and the
        frames put back in the queue."""
        sendable: list[Item] = []
        done: list[Delivery] = []
        requeued: list[Delivery] = []
        for delivery in batch:
            try:
                sendable += self.receive_batch([delivery])
                done += self.acks_due
            except BackchannelError:
                self._links.deliveries.put_nowait(delivery)  # not stored: it comes round again
                requeued.append(delivery)
                continue
            except Exception:
                # Not acknowledged: the relay keeps it (and pushes it again later), so a
                # genuine frame is never lost to a bug; the line waits and the gap alarm says so.
                log.exception("a frame could not be processed; it stays at its relay")
                with contextlib.suppress(BackchannelError), self._store.transaction():
                    self._store.count("internal_error")
                continue
        return sendable, done, requeued

    def receive_batch(self, batch: list[Delivery], may_relax: bool = False) -> list[Item]:
        """Process frames from relays in one transaction; returns new frames to send.

        Rejected frames are counted by reason and dropped (the caller still acknowledges them
        to the relay, so garbage does not clog a mailbox); they never affect accepted messages.
        ``may_relax``: the caller acknowledges the frames only after a flush covers them, so a
        batch of receipts alone may commit without one (then ``_relaxed`` is set).
        """
        self._relaxed = False
        self.acks_due = []
        now = self._clock.now()
        work = _Batch()
        waiters = self._outbox.waiters
        opened = [self.inbound.open(delivery) for delivery in batch]  # (no transaction needed)
        try:
            # Receipts fill the smallest padding bucket: a batch of such entries (and of cover)
            # is likely to be receipts only, and starts without the flush; any other starts
            # with it (SQLite fixes the flush before the transaction), so a message costs no
            # extra commit.
            relax = may_relax and all(o.small for o in opened)
            with self._lines.mutation(durable=not relax):
                for one in opened:
                    self._receive_delivery(one, now, work)
                for line_id in work.receipts_due:
                    live = self._lines[line_id]
                    sealed = self._lines.seal(live, Delivered(live.state.delivered_upto, ms(now)))
                    self._store.add_outbound(line_id, sealed.seq, "delivered", sealed.frame, now)
                    work.outgoing.append((line_id, sealed.seq))
                    work.frames.append((line_id, sealed.seq, sealed.frame))
                    work.touched.add(line_id)
                for line_id in work.touched:
                    self._lines.persist(self._lines[line_id], last_contact=now)
            if relax:
                if work.must_flush or work.receipts_due or work.outgoing:
                    self._store.flush()  # committed: a failure here leaves the batch to come round
                else:
                    self._relaxed = True
        except BaseException:
            self._relaxed = False
            waiters.rollback()
            for delivery in self.inbound.rolled_back(work.taken, batch):
                self._links.deliveries.put_nowait(delivery)  # an entry's earlier fragments
            raise
        self.acks_due = self.inbound.committed(work.taken)
        for line_id, seq, frame in work.frames:
            self._outbox.committed(line_id, seq, frame)
        waiters.flush()
        for action in work.after:  # the batch is committed: nothing here may undo or lose it
            try:
                action()
            except Exception:
                log.exception("an action after a stored batch failed (alarm, health or circuit)")
        return work.outgoing

    def _receive_delivery(self, opened: Opened, now: float, work: _Batch) -> None:
        delivery = opened.delivery
        allowed, url = self._links.source(delivery)
        if not allowed:
            # A relay may deliver only for the mailboxes we subscribed there: it may not
            # pass its flood off as another relay's frames.
            self._store.count("unsubscribed_delivery")
            if url is not None:
                self._links.flood.useless(url, now)
            work.taken.acks.append(delivery)
            return
        try:
            self._receive_frame(opened, url, now, work)
        except RemoteError as exc:
            self.inbound.rejected(work.taken, delivery)
            self._store.count("unreadable_frame" if opened.unreadable else exc.code)
            if url is not None:
                self._links.flood.useless(url, now)
            if not any(d is delivery for d in work.taken.acks):
                work.taken.acks.append(delivery)
            log.info("dropped a frame: %s", exc)

    def _receive_frame(self, opened: Opened, url: str | None, now: float, work: _Batch) -> None:
        """One circuit frame: cover, or a fragment that may complete an entry."""
        if opened.error is not None:
            raise opened.error
        assert opened.line_id is not None and opened.frame is not None
        if isinstance(opened.frame, Cover):
            self._store.count("cover_received")
            if url is not None:
                self._monitor.contact_in(opened.line_id, url)
            work.taken.acks.append(opened.delivery)
            return
        whole = self.inbound.take(opened, opened.frame, url, now, work.taken)
        if whole is not None:
            self._receive_one(whole[0], whole[1], url, now, work)

    def _receive_one(self, sealed: Sealed, data: bytes, url: str | None, now: float, work: _Batch) -> None:
        """One whole envelope, checked against the mailbox it came through."""
        line_id = sealed.header.line_id
        live = self._lines.get(line_id)
        try:
            if live is None:
                if sealed.header.kind is Kind.HELLO:
                    work.must_flush = True
                    work.outgoing += self._pairing.open_hello(sealed, now)
                    return
                raise MisaddressedFrame("a frame arrived for a line this station does not have")
            peer_signing = live.row.peer_signing
            self._monitor.init_peer(live)
            result = receiving.receive(
                live.core, live.session, sealed, data, url, now, self._ledger, peer_signing
            )
        except InvitationAlreadyUsed:  # still counted and dropped, and now an alarm too
            work.must_flush = True
            work.after.append(lambda: self._pairing.invitation_reused(line_id, url))
            raise
        live.state, live.peer = result.core.state, result.core.peer
        for effect in result.effects:
            if isinstance(effect, fx.CopyArrived):
                # Any genuine copy proves its circuit works (the flood guard counted repeats
                # fragment by fragment, :mod:`inbound`).
                self._monitor.copy_arrived(effect.line_id, url, effect.seq)
            else:
                self._apply(live, effect, url, now, work)

    def _apply(self, live: LiveLine, effect: fx.Effect, url: str | None, now: float, work: _Batch) -> None:
        """Carry out one effect of the engine inside the batch's transaction (or after it)."""
        store, line_id = self._store, live.line_id
        waiters = self._outbox.waiters
        if not isinstance(effect, RELAXABLE) and effect != fx.SaveLine(line_id):
            work.must_flush = True
        match effect:
            case fx.Count(name, n):
                store.count(name, n)
            case fx.HoldFrame(_, seq, data):
                store.hold(line_id, seq, data)
            case fx.ReleaseHeld(_, seq):
                store.take_held(line_id, seq)
            case fx.StoreEntry():
                self._lines.record_entry(effect)
            case fx.CheckSeen(_, seq, seen):
                self._recorder.check_seen(live, seq, seen, work.after)
            case fx.StoreInbound(_, seq, precedence, text, sent_at):
                body = self._lines.body(line_id, "in", seq, text)
                store.add_inbound(line_id, seq, precedence, body, sent_at, now)
                if precedence == "FLASH":
                    work.after.append(lambda: self._monitor.flash_received(line_id, seq))
            case fx.ReceiptDue():
                work.receipts_due.add(line_id)
            case fx.WakeIncoming(_, seq):
                waiters.incoming(line_id, seq)
            case fx.MarkDelivered(_, upto):
                store.mark_delivered(line_id, upto, now)
            case fx.WakeDelivered(_, upto):
                waiters.reached_upto(line_id, upto, "delivered")
            case fx.MarkAcknowledged(_, seq, operator):
                store.mark_acknowledged(line_id, seq, operator, now)
            case fx.WakeAcknowledged(_, seq):
                waiters.reached(line_id, seq, "acknowledged")
            case fx.LinkTestArrived(_, seq, test, circuit):
                # At once, not after the commit: later copies of this test in the same batch must
                # find it (health is in memory only; a rolled-back batch costs nothing here).
                self._monitor.test_received(line_id, test.test_id, seq, circuit)
            case fx.LinkReplyArrived(_, seq, reply, circuit):
                self._monitor.reply_received(line_id, reply, seq, circuit)
            case fx.ApplyCircuits(_, change):
                self._circuits.apply(live, change, work.after)
            case fx.CheckpointArrived(_, seq, checkpoint):
                self._recorder.checkpoint_received(live, seq, checkpoint, work.after)
            case fx.SaveLine(_, established):
                if established:
                    self._lines.persist(live, state="established")
                    work.after.append(lambda: self._pairing.welcomed(line_id))
                work.touched.add(line_id)
            case fx.QueueFrames(_, seqs):
                work.outgoing.extend((line_id, seq) for seq in seqs)
            case fx.GapChanged(_, open_):
                work.after.append(lambda: self._monitor.gap(line_id, open_))
            case fx.ClearDeadline(_, seq):
                work.after.append(lambda: self._monitor.clear_deadline(line_id, seq))
            case fx.Unreadable(_, direction, seq, code):
                log.warning("frame %d on line %s was unreadable: %s", seq, live.row.name, code)
                detail = (
                    f"entry {seq} from {live.row.peer_name} passed the line key but could not be read "
                    f"({code}); its place was spent and it is kept in the record as such"
                )
                work.after.append(lambda: self._recorder.alarm(line_id, f"{direction}:{seq}", detail))
            case _:
                raise AssertionError(f"the receive shell has no rule for {effect!r}")
