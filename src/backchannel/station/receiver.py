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

The receiver works on the station's state (lines, store, keys) as the station's partner;
the station keeps the public entry points (``receive_batch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING

from backchannel.clock import ms
from backchannel.errors import (
    BackchannelError,
    DecryptError,
    InvalidInvitation,
    InvitationAlreadyUsed,
    MisaddressedFrame,
    RemoteError,
)
from backchannel.proto import envelope
from backchannel.proto import line as proto_line
from backchannel.proto.envelope import Kind, Sealed
from backchannel.proto.invitation import parse_invitation
from backchannel.proto.line import PendingInvitation
from backchannel.proto.ordering import Verdict, classify
from backchannel.proto.payloads import (
    Acknowledged,
    Checkpoint,
    Circuits,
    Delivered,
    Hello,
    LinkTest,
    LinkTestReply,
    Message,
    Welcome,
)
from backchannel.proto.session import Identity
from backchannel.station.liveline import LiveLine
from backchannel.station.relay_link import Delivery
from backchannel.station.store import Store

if TYPE_CHECKING:
    from backchannel.station.station import Station

log = logging.getLogger("backchannel.station")

RECEIVE_BATCH = 512
#: Frames held ahead of a gap per line, at most (on disk). Later ones are dropped and counted
#: (``held_limit``); the peer sends them again end to end once it learns we lack them.
MAX_HELD = 10_000


class _HeldView:
    """``seq in held`` for the ordering rule, answered by the store."""

    def __init__(self, store: Store, line_id: bytes) -> None:
        self._store, self._line_id = store, line_id

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self._store.is_held(self._line_id, seq)


def _misaddressed() -> RemoteError:
    return MisaddressedFrame("a frame arrived for a line this station does not have")


class Receiver:
    def __init__(self, station: Station) -> None:
        self._s = station

    async def run(self) -> None:
        while True:
            batch = [await self._s._deliveries.get()]
            while len(batch) < RECEIVE_BATCH and not self._s._deliveries.empty():
                batch.append(self._s._deliveries.get_nowait())
            try:
                newly_sendable = self._s.receive_batch(batch)
            except BackchannelError as exc:
                # Nothing of the batch was kept or acknowledged; try the same frames again.
                log.error("a batch of %d frames was not stored (%s); retrying", len(batch), exc)
                await asyncio.sleep(0.5)
                for delivery in batch:
                    self._s._deliveries.put_nowait(delivery)
                continue
            except Exception:
                # A bug, not bad input (that is a RemoteError, counted per frame). Never let it
                # stop the station: take the frames one by one and drop only the one that fails.
                log.exception("a batch of %d frames hit an internal error", len(batch))
                newly_sendable, done, requeued = self._receive_one_by_one(batch)
                self._release([d for d in batch if not any(d is r for r in requeued)])
                batch = done
            else:
                self._release(batch)
            self._s.sender.enqueue(newly_sendable)  # receipts leave before the relay acks
            for delivery in batch:
                self._ack(delivery)
            self._s.check_floods()

    @staticmethod
    def _release(batch: list[Delivery]) -> None:
        """Give each frame's link its room back (the payloads are no longer held here)."""
        for delivery in batch:
            if delivery.link is not None:
                delivery.link.processed(delivery)

    def _ack(self, delivery: Delivery) -> None:
        """Acknowledge to the relay that delivered it (only for a mailbox it serves us)."""
        link = delivery.link
        if link is None:
            url = self._s._mailbox_urls.get(delivery.recv_id)
            link = self._s._links.get(url) if url is not None else None
        if link is not None and link.receives(delivery.recv_id):
            link.ack_soon(delivery.recv_id, delivery.msg_id)

    def _receive_one_by_one(
        self, batch: list[Delivery]
    ) -> tuple[list[tuple[bytes, int]], list[Delivery], list[Delivery]]:
        """Returns what to send, the frames that may be acknowledged to their relays, and the
        frames put back in the queue."""
        sendable: list[tuple[bytes, int]] = []
        done: list[Delivery] = []
        requeued: list[Delivery] = []
        for delivery in batch:
            try:
                sendable += self._s.receive_batch([delivery])
            except BackchannelError:
                self._s._deliveries.put_nowait(delivery)  # not stored: it comes round again
                requeued.append(delivery)
                continue
            except Exception:
                # Not acknowledged: the relay keeps it (and pushes it again later), so a
                # genuine frame is never lost to a bug; the line waits and the gap alarm says so.
                log.exception("a frame could not be processed; it stays at its relay")
                with contextlib.suppress(BackchannelError), self._s._store.transaction():
                    self._s._store.count("internal_error")
                continue
            done.append(delivery)
        return sendable, done, requeued

    def receive_batch(self, batch: list[Delivery]) -> list[tuple[bytes, int]]:
        """Process frames from relays in one transaction; returns new frames to send.

        Rejected frames are counted by reason and dropped (the caller still acknowledges them
        to the relay, so garbage does not clog a mailbox); they never affect accepted messages.
        """
        now = self._s._clock.now()
        outgoing: list[tuple[bytes, int]] = []
        receipts_due: set[bytes] = set()
        touched: set[bytes] = set()
        self._s._after_commit = []
        try:
            self._receive_in_transaction(batch, now, outgoing, receipts_due, touched)
        except BaseException:
            self._s.waiters.rollback()
            self._s._after_commit = []
            raise
        self._s.waiters.flush()
        after, self._s._after_commit = self._s._after_commit, []
        for action in after:  # the batch is committed: nothing here may undo or lose it
            try:
                action()
            except Exception:
                log.exception("an action after a stored batch failed (alarm, health or circuit)")
        return outgoing

    def _receive_in_transaction(
        self,
        batch: list[Delivery],
        now: float,
        outgoing: list[tuple[bytes, int]],
        receipts_due: set[bytes],
        touched: set[bytes],
    ) -> None:
        with self._s._mutation():
            for delivery in batch:
                link = delivery.link
                if link is not None and not link.receives(delivery.recv_id):
                    # A relay may deliver only for the mailboxes we subscribed there: it may not
                    # pass its flood off as another relay's frames.
                    self._s._store.count("unsubscribed_delivery")
                    self._s.flood.useless(link.url, now)
                    continue
                url = link.url if link is not None else self._s._mailbox_urls.get(delivery.recv_id)
                try:
                    self._receive_one(delivery.payload, url, now, outgoing, receipts_due, touched)
                except RemoteError as exc:
                    self._s._store.count(exc.code)
                    if url is not None:
                        self._s.flood.useless(url, now)
                    log.info("dropped a frame: %s", exc)
            for line_id in receipts_due:
                live = self._s._lines[line_id]
                sealed = self._s._seal(live, Delivered(live.state.delivered_upto, ms(now)))
                self._s._store.add_outbound(line_id, sealed.seq, "delivered", sealed.frame, now)
                outgoing.append((line_id, sealed.seq))
                touched.add(line_id)
            for line_id in touched:
                self._s._persist(self._s._lines[line_id], last_contact=now)

    def _receive_one(
        self,
        data: bytes,
        url: str | None,
        now: float,
        outgoing: list[tuple[bytes, int]],
        receipts_due: set[bytes],
        touched: set[bytes],
    ) -> None:
        sealed = envelope.parse(data)
        line_id = sealed.header.line_id
        live = self._s._lines.get(line_id)
        if live is None:
            if sealed.header.kind is Kind.HELLO:
                self._receive_hello(sealed, now, outgoing)
                return
            raise _misaddressed()
        try:
            inner = proto_line.authenticate(live.state, sealed)
        except DecryptError:
            if sealed.header.kind is Kind.HELLO:
                raise InvitationAlreadyUsed(
                    "a second party tried to accept an invitation already used"
                ) from None
            raise
        seq = sealed.header.seq
        self._s.monitor.copy_arrived(line_id, url, seq)  # any genuine copy proves its circuit works
        repeat = url is not None and self._s.flood.copy(url, line_id, seq, now)
        verdict = classify(seq, live.state.delivered_upto, _HeldView(self._s._store, line_id))
        if verdict is Verdict.DUPLICATE:
            self._s._store.count("duplicate")
            if repeat and url is not None:
                self._s.flood.useless(url, now)  # the same relay sent this very frame again
            return
        if verdict is Verdict.TOO_FAR:
            self._s._store.count("too_far_ahead")
            return
        if verdict is Verdict.HOLD:
            if self._s._store.held_count(line_id) >= MAX_HELD:
                # Bounded: the peer resends what we lack once the gap is filled (§10.6).
                self._s._store.count("held_limit")
                return
            self._s._store.hold(line_id, seq, data)
            self._s._after_commit.append(functools.partial(self._s.monitor.gap, line_id, True))
            return
        touched.add(line_id)
        self._deliver(live, seq, inner, url, now, outgoing, receipts_due)
        while (held := self._s._store.take_held(line_id, live.state.delivered_upto + 1)) is not None:
            next_sealed = envelope.parse(held)
            inner = proto_line.authenticate(live.state, next_sealed)
            self._deliver(live, next_sealed.header.seq, inner, None, now, outgoing, receipts_due)
        if not self._s._store.has_held(line_id):
            self._s._after_commit.append(functools.partial(self._s.monitor.gap, line_id, False))

    def _deliver(
        self,
        live: LiveLine,
        seq: int,
        inner: bytes,
        url: str | None,
        now: float,
        outgoing: list[tuple[bytes, int]],
        receipts_due: set[bytes],
    ) -> None:
        live.state, opened = proto_line.decrypt_next(
            live.state, live.session, seq, inner, live.row.peer_signing
        )
        payload = opened.payload
        line_id = live.line_id
        direction = live.state.in_direction
        self._s.recorder.record(line_id, direction, seq, live.state.transcript.heads[direction], opened.raw)
        if opened.seen is not None:
            self._s.recorder.check_seen(live, seq, opened.seen, self._s._after_commit)
            count = min(opened.seen.count, live.state.next_seq - 1)  # never more than we sent
            self._s.monitor.peer_reported(line_id, count, first_hand=url is not None)
        if opened.error is not None:
            # Authenticated by the line key, yet unreadable: the frame is spent (the line moves
            # on, and the transcripts now differ, which is how the operators will see it).
            self._s._store.count("unreadable_" + opened.error.code)
            log.warning("frame %d on line %s was unreadable: %s", seq, live.row.name, opened.error)
            detail = (
                f"entry {seq} from {live.row.peer_name} passed the line key but could not be read "
                f"({opened.error.code}); its place was spent and it is kept in the record as such"
            )
            self._s._after_commit.append(
                functools.partial(
                    self._s.recorder._alarm, line_id, f"{live.state.in_direction}:{seq}", detail
                )
            )
        if isinstance(payload, Message):
            self._s._store.add_inbound(
                line_id,
                seq,
                payload.precedence.value,
                self._s._body(line_id, "in", seq, payload.text),
                payload.sent_at / 1000,
                now,
            )
            receipts_due.add(line_id)
            self._s.waiters.incoming(line_id, seq)
        elif isinstance(payload, Delivered):
            self._s._store.mark_delivered(line_id, payload.upto, now)
            self._s.waiters.reached_upto(line_id, payload.upto, "delivered")
        elif isinstance(payload, Acknowledged):
            self._s._store.mark_acknowledged(line_id, payload.seq, payload.operator, now)
            self._s.waiters.reached(line_id, payload.seq, "acknowledged")
            self._s._after_commit.append(
                functools.partial(self._s.monitor.clear_deadline, line_id, payload.seq)
            )
        elif isinstance(payload, LinkTest):
            # At once, not after the commit: later copies of this test in the same batch must
            # find it (health is in memory only; a rolled-back batch costs nothing here).
            self._s.monitor.test_received(line_id, payload.test_id, seq, url)
        elif isinstance(payload, LinkTestReply):
            self._s.monitor.reply_received(line_id, payload, seq, url)
        elif isinstance(payload, Circuits):
            self._s.circuits.apply(live, payload, self._s._after_commit)
        elif isinstance(payload, Checkpoint):
            self._s.recorder.checkpoint_received(live, seq, payload, self._s._after_commit)
        elif isinstance(payload, Welcome):
            if live.row.role == proto_line.ACCEPTER and not live.established:
                self._s._persist(live, state="established")
                outgoing.extend((line_id, s) for s in range(2, live.state.next_seq))
        elif isinstance(payload, Hello):
            self._s._store.count("unexpected_hello")

    def _receive_hello(self, sealed: Sealed, now: float, outgoing: list[tuple[bytes, int]]) -> None:
        line_id = sealed.header.line_id
        found = self._s._store.get_invitation(line_id)
        if found is None:
            raise _misaddressed()
        local_name, blob, secrets_sealed, used = found
        if used:
            raise InvitationAlreadyUsed()
        signed = parse_invitation(self._s._atrest.open(blob, b"invitation-blob" + line_id))
        if signed.invitation.expires_at < ms(now):
            raise InvalidInvitation("a hello arrived for an invitation that has expired")
        secrets = self._s._atrest.open(secrets_sealed, b"invitation" + line_id)
        pending = PendingInvitation(signed, secrets[:32], secrets[32:])
        try:
            opened = proto_line.open_hello(self._s._identity, pending, sealed)
        except RemoteError:
            # Olm may have spent the one-time key in memory: take the account back from disk.
            self._s._identity = Identity.from_pickle(
                (self._s._store.get_meta("account") or b"").decode("ascii"), self._s._atrest.store_key
            )
            raise
        name = local_name or self._s.pairing.unique_name(opened.hello.name)
        row = self._s.pairing.new_row(
            opened.state,
            opened.session,
            name,
            "established",
            opened.hello.name,
            opened.peer_identity_key,
            opened.peer_signing_key,
            now,
            opened.hello.pq_key or None,
        )
        live = LiveLine(row, opened.state, opened.session)
        self._s._store.add_line(row)
        self._s.recorder.record(line_id, 1, 1, opened.state.transcript.heads[1], opened.raw)
        self._s._store.mark_invitation_used(line_id)
        self._s._save_account()  # the one-time key is now spent
        # The accepter's mailboxes must be on the relays of our invitation: a hello may not
        # make this station connect anywhere else.
        invited = {url for lid, url, _, _ in self._s._store.mailboxes() if lid == line_id}
        refused = [cap for cap in opened.hello.mailboxes if cap.url not in invited]
        if refused:
            self._s._store.count("circuit_refused_policy", len(refused))
        caps = [cap for cap in opened.hello.mailboxes if cap.url in invited]
        for cap in caps:
            self._s._store.add_peer_mailbox(
                line_id, cap.url, cap.send_id, self._s._atrest.seal(cap.send_key, b"send-key" + cap.send_id)
            )
        self._s._lines[line_id] = live
        welcome = self._s._seal(live, Welcome())
        self._s._store.add_outbound(line_id, welcome.seq, "welcome", welcome.frame, now)
        self._s._persist(live, last_contact=now)
        outgoing.append((line_id, welcome.seq))
        for cap in caps:
            self._s._add_sender(line_id, cap.url, cap.send_id, cap.send_key)
