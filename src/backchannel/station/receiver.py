"""Receiving: frames from every relay, in batches, stored before anything is acknowledged.

Theory of operation
-------------------
Frames from every relay land in one queue. :meth:`Receiver.run` takes them in batches and,
inside one transaction per batch, authenticates each envelope, drops duplicates (after
noting which circuit the copy came through), holds early frames, decrypts the next in-order
frames, applies receipts, stores messages and the record, and seals a cumulative *delivered*
receipt. Only after the commit are the receipts queued and the frames acknowledged to their
relays, which then delete them. A storage failure leaves nothing behind and the batch comes
round again; a bug on one frame costs only that frame (it is counted and dropped).

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
from backchannel.proto import envelope
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import receiving
from backchannel.proto.engine.receiving import MAX_HELD
from backchannel.proto.envelope import Kind
from backchannel.proto.ordering import Verdict
from backchannel.proto.payloads import Delivered
from backchannel.station.circuits import CircuitChanges
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

    async def run(self) -> None:
        deliveries = self._links.deliveries
        while True:
            batch = [await deliveries.get()]
            while len(batch) < RECEIVE_BATCH and not deliveries.empty():
                batch.append(deliveries.get_nowait())
            try:
                newly_sendable = self.receive_batch(batch)
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
                batch = done
            else:
                self._release(batch)
            self._outbox.enqueue(newly_sendable)  # receipts leave before the relay acks
            for delivery in batch:
                self._links.ack(delivery)
            self._links.check_floods()

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
            done.append(delivery)
        return sendable, done, requeued

    def receive_batch(self, batch: list[Delivery]) -> list[Item]:
        """Process frames from relays in one transaction; returns new frames to send.

        Rejected frames are counted by reason and dropped (the caller still acknowledges them
        to the relay, so garbage does not clog a mailbox); they never affect accepted messages.
        """
        now = self._clock.now()
        work = _Batch()
        waiters = self._outbox.waiters
        try:
            with self._lines.mutation():
                for delivery in batch:
                    self._receive_delivery(delivery, now, work)
                for line_id in work.receipts_due:
                    live = self._lines[line_id]
                    sealed = self._lines.seal(live, Delivered(live.state.delivered_upto, ms(now)))
                    self._store.add_outbound(line_id, sealed.seq, "delivered", sealed.frame, now)
                    work.outgoing.append((line_id, sealed.seq))
                    work.touched.add(line_id)
                for line_id in work.touched:
                    self._lines.persist(self._lines[line_id], last_contact=now)
        except BaseException:
            waiters.rollback()
            raise
        waiters.flush()
        for action in work.after:  # the batch is committed: nothing here may undo or lose it
            try:
                action()
            except Exception:
                log.exception("an action after a stored batch failed (alarm, health or circuit)")
        return work.outgoing

    def _receive_delivery(self, delivery: Delivery, now: float, work: _Batch) -> None:
        allowed, url = self._links.source(delivery)
        if not allowed:
            # A relay may deliver only for the mailboxes we subscribed there: it may not
            # pass its flood off as another relay's frames.
            self._store.count("unsubscribed_delivery")
            if url is not None:
                self._links.flood.useless(url, now)
            return
        try:
            self._receive_one(delivery.payload, url, now, work)
        except RemoteError as exc:
            self._store.count(exc.code)
            if url is not None:
                self._links.flood.useless(url, now)
            log.info("dropped a frame: %s", exc)

    def _receive_one(self, data: bytes, url: str | None, now: float, work: _Batch) -> None:
        sealed = envelope.parse(data)
        line_id = sealed.header.line_id
        live = self._lines.get(line_id)
        try:
            if live is None:
                if sealed.header.kind is Kind.HELLO:
                    work.outgoing += self._pairing.open_hello(sealed, now)
                    return
                raise MisaddressedFrame("a frame arrived for a line this station does not have")
            peer_signing = live.row.peer_signing
            self._monitor.init_peer(live)
            result = receiving.receive(
                live.core, live.session, sealed, data, url, now, self._ledger, peer_signing
            )
        except InvitationAlreadyUsed:  # still counted and dropped, and now an alarm too
            work.after.append(lambda: self._pairing.invitation_reused(line_id, url))
            raise
        live.state, live.peer = result.core.state, result.core.peer
        repeat = False
        for effect in result.effects:
            if isinstance(effect, fx.CopyArrived):
                # Any genuine copy proves its circuit works; the flood guard counts repeats.
                self._monitor.copy_arrived(effect.line_id, url, effect.seq)
                repeat = url is not None and self._links.flood.copy(url, effect.line_id, effect.seq, now)
            else:
                self._apply(live, effect, url, now, work)
        if result.verdict is Verdict.DUPLICATE and repeat and url is not None:
            self._links.flood.useless(url, now)  # the same relay sent this very frame again

    def _apply(self, live: LiveLine, effect: fx.Effect, url: str | None, now: float, work: _Batch) -> None:
        """Carry out one effect of the engine inside the batch's transaction (or after it)."""
        store, line_id = self._store, live.line_id
        waiters = self._outbox.waiters
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
