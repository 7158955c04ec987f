"""The outbox port: seal our payloads, store them, and hand them to the sender after the commit.

Theory of operation
-------------------
Every frame of ours is one *send event* of the line engine
(:func:`backchannel.proto.engine.sending.send`): sealed once (sequence number, Olm, the
transcript), stored with the new session state in the event's transaction, and queued on the
line's circuits only after the commit. Operator messages join a *group commit*: sends that
arrive in the same turn of the event loop are sealed and stored in one transaction (one disk
flush for all), each still encrypted once and stored before it is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backchannel.clock import Clock, ms
from backchannel.errors import (
    BackchannelError,
    InvalidArgument,
    MessageTooLarge,
    StorageError,
    TransportError,
)
from backchannel.proto import wire
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import sending
from backchannel.proto.payloads import MAX_TEXT_BYTES, Acknowledged, Message, Payload, Precedence
from backchannel.station.circuit_keys import CircuitKeyring
from backchannel.station.config import StationConfig
from backchannel.station.delivery import Item, Sender, Waiters
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.liveline import LiveLine
from backchannel.station.pacer import Pacer
from backchannel.station.store import SendKeyRow, Store

log = logging.getLogger("backchannel.station")

#: Resolves once durable to (sequence number, waiter, whether an idempotency key found it stored).
Accepted = tuple[int, "asyncio.Future[None] | None", bool]
#: Inside the commit's transaction: what an idempotency key already names (or None), raising
#: ``IdempotencyKeyReused`` if another message (set by :class:`backchannel.station.sends.Sends`).
KeyCheck = Callable[[str, LiveLine, Precedence, str], "SendKeyRow | None"]


@dataclass
class _Queued:
    """One operator message waiting for the next group commit."""

    live: LiveLine
    precedence: Precedence
    text: str
    wait: str | None
    future: asyncio.Future[Accepted]
    #: (draft id, operator, note) when a second operator releases a held draft
    release: tuple[str, str, str] | None = None
    key: str | None = None


STATUS_LEVELS = ("queued", "relayed", "delivered", "acknowledged")


def check_message(text: str, precedence: str | Precedence, wait: str | None) -> Precedence:
    """An operator's message, checked before anything is stored; returns its precedence."""
    try:
        prec = Precedence(precedence.upper() if isinstance(precedence, str) else precedence)
    except ValueError:
        raise InvalidArgument(
            f"unknown precedence {precedence!r}: use FLASH, IMMEDIATE, PRIORITY or ROUTINE"
        ) from None
    if not text:
        raise InvalidArgument("the message is empty")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise MessageTooLarge(f"the message is longer than {MAX_TEXT_BYTES} bytes; split it")
    if wait is not None and wait not in STATUS_LEVELS[1:]:
        raise InvalidArgument("wait must be one of relayed, delivered, acknowledged")
    return prec


#: Committed frames kept at hand for the sender (one per message or receipt; a few MiB at most).
FRESH_FRAMES = 2048


class Outbox:
    """Our frames: sealed and stored in one transaction, sent after it commits."""

    def __init__(
        self,
        lines: Lines,
        links: Links,
        store: Store,
        clock: Clock,
        config: StationConfig,
        keys: CircuitKeyring | None = None,
    ) -> None:
        self._lines = lines
        self._store = store
        self._clock = clock
        self.keys = keys or CircuitKeyring(lines, store)
        self.waiters = Waiters()
        #: The seam every wire frame leaves through: cover traffic's slots (PROTOCOL §10.7).
        self.pacer = Pacer(lines, links, store, config, self.keys)
        self.sender = Sender(links, self, config, self.pacer)
        self._batch: list[_Queued] = []
        self.on_key: KeyCheck | None = None
        #: Envelopes just committed (with the message's precedence), so the sender need not read
        #: back what it has in hand (a stored envelope never changes; only committed ones are here).
        self._fresh: OrderedDict[Item, tuple[bytes, str | None]] = OrderedDict()
        links.on_released.append(self.sender.forget)

    def committed(self, line_id: bytes, seq: int, frame: bytes, precedence: str | None = None) -> None:
        """``frame`` is stored (its transaction committed): keep it at hand for the sender."""
        self._fresh[(line_id, seq)] = (frame, precedence)
        while len(self._fresh) > FRESH_FRAMES:
            self._fresh.popitem(last=False)

    def enqueue(self, items: Sequence[Item]) -> None:
        """Send these stored frames on every circuit (after the commit that stored them)."""
        self.sender.enqueue(list(items))

    # ---- the send event ---------------------------------------------------------------------

    def store_payload(self, live: LiveLine, payload: Payload, kind: str) -> int:
        """Seal and store one payload inside the caller's transaction; returns its sequence
        number. The caller enqueues it once that transaction has committed."""
        live.state, effects, sealed = sending.send(
            live.state, live.session, payload, kind, self._lines.rng, self._lines.identity.sign
        )
        for effect in effects:
            if isinstance(effect, fx.StoreEntry):
                self._lines.record_entry(effect)
            elif isinstance(effect, fx.StoreOutbound):
                self._store.add_outbound(
                    effect.line_id, effect.seq, effect.kind, effect.frame, self._clock.now()
                )
            elif isinstance(effect, fx.SaveLine):
                self._lines.persist(live)
            # (QueueFrames: the caller enqueues once its transaction has committed)
        return sealed.seq

    def send_payload(self, line_id: bytes, payload: Payload, kind: str, enqueue: bool = True) -> int:
        """Seal a control payload (receipt, link test, ...), store it, then queue it to send.

        Inside a larger transaction, pass ``enqueue=False`` and enqueue after that commits.
        """
        with self._lines.mutation():
            seq = self.store_payload(self._lines[line_id], payload, kind)
        if enqueue:
            self.enqueue([(line_id, seq)])
        return seq

    def acknowledge(self, live: LiveLine, seq: int, operator: str) -> None:
        """Record that ``operator`` read received message ``seq`` and tell the sender."""
        now = self._clock.now()
        with self._lines.mutation():
            self._store.ack_inbound(live.line_id, seq, operator, now)
            ack_seq = self.store_payload(live, Acknowledged(seq, operator, ms(now)), "ack")
        self.enqueue([(live.line_id, ack_seq)])

    # ---- the group commit of operator messages ----------------------------------------------

    async def send_message(
        self,
        live: LiveLine,
        precedence: Precedence,
        text: str,
        wait: str | None,
        timeout: float,
        key: str | None = None,
    ) -> tuple[int, bool]:
        """Store an operator's message durably, then send it; with ``wait``, until it reached
        that status (or ``TransportError`` after ``timeout``: it keeps trying). Returns its
        sequence number and whether its idempotency ``key`` found it already stored."""
        seq, waiter, repeated = await self.queue_message(live, precedence, text, wait, key=key)
        if waiter is not None:
            await self._await(live, seq, wait, waiter, timeout)
        return seq, repeated

    async def wait_for(self, live: LiveLine, seq: int, wait: str | None, timeout: float) -> None:
        """Wait until a message already stored reaches ``wait`` (a retried idempotent send)."""
        if wait is not None and not self._reached(live.line_id, seq, wait):
            await self._await(live, seq, wait, self.waiters.register(live.line_id, seq, wait), timeout)

    def _reached(self, line_id: bytes, seq: int, wait: str) -> bool:
        row = self._store.outbound_one(line_id, seq)
        stamps = (None, row.relayed_at, row.delivered_at, row.acked_at) if row else (None,) * 4
        return any(stamps[STATUS_LEVELS.index(wait) :])

    async def _await(
        self, live: LiveLine, seq: int, wait: str | None, waiter: asyncio.Future[None], timeout: float
    ) -> None:
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise TransportError(
                f"the message is queued as {live.row.name}:out/{seq} but was not {wait} "
                f"within {timeout:g} s; it will keep trying"
            ) from None

    def queue_message(
        self,
        live: LiveLine,
        precedence: Precedence,
        text: str,
        wait: str | None,
        release: tuple[str, str, str] | None = None,
        key: str | None = None,
    ) -> asyncio.Future[Accepted]:
        """Join the next group commit; resolves to (sequence number, waiter, repeated) once durable."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._batch.append(_Queued(live, precedence, text, wait, future, release, key))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._commit)
        return future

    def _commit(self) -> None:
        batch, self._batch = self._batch, []
        now = self._clock.now()
        sealed: list[Item] = []
        frames: list[tuple[bytes, str]] = []
        done: list[tuple[_Queued, int, bool]] = []
        refused: list[tuple[_Queued, Exception]] = []
        try:
            with self._lines.mutation():
                for queued in batch:
                    # By id: a failed transaction since the send was queued replaced the objects.
                    live = self._lines[queued.live.line_id]
                    if queued.key is not None and self.on_key is not None:
                        try:  # a retry racing its original in this very commit finds it stored
                            found = self.on_key(queued.key, live, queued.precedence, queued.text)
                        except BackchannelError as exc:
                            refused.append((queued, exc))
                            continue
                        if found is not None and found.seq is not None:
                            done.append((queued, found.seq, True))
                            continue
                    frame = self._lines.seal(live, Message(queued.precedence, queued.text, ms(now)))
                    body = self._lines.body(live.line_id, "out", frame.seq, queued.text)
                    self._store.add_outbound(
                        live.line_id,
                        frame.seq,
                        "msg",
                        frame.frame,
                        now,
                        queued.precedence.value,
                        body,
                        queued.key,
                    )
                    if queued.release is not None:  # in the same transaction: sent once, and audited
                        draft_id, operator, note = queued.release
                        self._store.mark_released(draft_id, operator, now, frame.seq)
                        prec = queued.precedence.value
                        detail = f"{live.row.name}:{frame.seq} {prec} draft {draft_id}, {note}"
                        self._store.add_audit(now, operator, "release", detail)
                    sealed.append((live.line_id, frame.seq))
                    frames.append((frame.frame, queued.precedence.value))
                    done.append((queued, frame.seq, False))
                for line_id in {item.live.line_id for item in batch}:
                    self._lines.persist(self._lines[line_id])
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for (line_id, seq), (data, precedence) in zip(sealed, frames, strict=True):
            self.committed(line_id, seq, data, precedence)
        for queued, error in refused:
            if not queued.future.done():
                queued.future.set_exception(error)
        for queued, seq, repeated in done:
            line_id = queued.live.line_id
            wait = queued.wait
            due = wait is not None and not (repeated and self._reached(line_id, seq, wait))
            waiter = self.waiters.register(line_id, seq, wait) if wait and due else None
            if not queued.future.done():
                queued.future.set_result((seq, waiter, repeated))
        self.enqueue(sealed)

    # ---- what the sender asks ----------------------------------------------------------------

    def may_send(self, line_id: bytes, seq: int) -> bool:
        """Whether the frame may leave now: an accepter sends only its hello until welcomed."""
        live = self._lines.get(line_id)
        return live is not None and live.core.may_send(seq)

    def outbound_frame(self, line_id: bytes, seq: int) -> bytes:
        """The stored envelope of our entry ``seq`` (the same bytes on every retry and circuit)."""
        return self._outbound(line_id, seq)[0]

    def _outbound(self, line_id: bytes, seq: int) -> tuple[bytes, str | None]:
        fresh = self._fresh.get((line_id, seq))
        if fresh is not None:
            return fresh
        row = self._store.outbound_one(line_id, seq)
        if row is None:
            raise StorageError(f"outbound frame {seq} is missing")
        return bytes(row.frame), row.precedence

    def wire_frames(self, line_id: bytes, seq: int, url: str) -> tuple[list[bytes], str | None]:
        """The circuit frames of our entry ``seq`` for the circuit ``url`` (its envelope split
        and wrapped under that circuit's keys, PROTOCOL §7.1), and the message's precedence.

        Deterministic (synthetic nonces): a retry gives the relay the very same frames, which
        its idempotent SEND stores once."""
        envelope, precedence = self._outbound(line_id, seq)
        return wire.seal_fragments(self.keys.sending(line_id, url, seq), seq, envelope), precedence

    def mark_sent(self, items: list[tuple[bytes, int, str]]) -> None:
        """Circuits stored these frames. Bookkeeping only: if a power cut loses it, the
        frames are sent again, harmlessly."""
        with self._store.transaction(durable=False):
            self._store.record_sent(items, self._clock.now())
        for line_id, seq, _ in items:
            self.waiters.reached(line_id, seq, "relayed")
