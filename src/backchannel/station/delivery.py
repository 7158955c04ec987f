"""The delivery engine: push stored frames to every circuit, retry until a relay stores them.

Theory of operation
-------------------
Frames enter the send queue only after the
transaction that sealed them has committed. The sender takes them in order and sends each to
every circuit (relay) of the line, keeping up to ``send_window`` requests in flight
(pipelining over each WebSocket). A frame is *relayed* once a relay answers *stored* (the
relay answers only after its own commit); which circuits stored it is recorded, so that a
circuit that was down gets every frame it missed when it returns, even across a restart of
the station. A failed send (connection lost, relay refused) parks the frame per circuit; it
goes back in the queue, in sequence order, as soon as that relay's link is up again, and
otherwise on a backoff timer. Retries send the very same bytes: the relay stores a repeated
frame once, and the receiving station drops copies by sequence number, so retrying is always
safe.

What leaves is never the stored envelope itself: for each circuit it is split and wrapped into
4 096-byte circuit frames under that circuit's keys (PROTOCOL §7.1, :meth:`Frames.wire_frames`),
and every one of them goes through the one wire seam (:mod:`backchannel.station.wire_send`),
where the cover-traffic pacer sits when there is one. An entry counts as stored on a circuit
only when the relay stored every one of its fragments; if any fails, the whole entry is parked
and later sent again, all fragments (they are the same bytes, synthetic nonces: the relay's
idempotent SEND keeps one copy of each).

An accepter's line sends only its hello until the inviter's welcome arrives (the inviter
cannot authenticate anything else before the hello); :meth:`Outbox.may_send` says so, and
such frames wait here until the station enqueues them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from backchannel.aio import TaskSet
from backchannel.errors import BackchannelError, TransportError
from backchannel.station.backoff import next_backoff
from backchannel.station.config import StationConfig
from backchannel.station.links import Links
from backchannel.station.wire_send import DirectSend, WireSend

log = logging.getLogger("backchannel.delivery")

Item = tuple[bytes, int]  # (line id, sequence number)
Target = tuple[bytes, int, str]  # (line id, sequence number, circuit url)
LEVELS = {"relayed": 1, "delivered": 2, "acknowledged": 3}
INITIAL_BACKOFF = 0.25


class Frames(Protocol):
    """What the sender asks of the outbox."""

    def may_send(self, line_id: bytes, seq: int) -> bool: ...
    def wire_frames(self, line_id: bytes, seq: int, url: str) -> tuple[list[bytes], str | None]: ...
    def mark_sent(self, items: list[tuple[bytes, int, str]]) -> None: ...


class Sender:
    """Sends each queued frame on every circuit of its line; retries per circuit."""

    def __init__(
        self, links: Links, frames: Frames, config: StationConfig, wire: WireSend | None = None
    ) -> None:
        self._links = links
        self._frames = frames
        #: The seam every circuit frame leaves through (replaced by the pacer with cover traffic).
        self.wire: WireSend = wire or DirectSend(links)
        self._config = config
        self._queue: deque[Target] = deque()
        self._queued: set[Target] = set()
        self._parked: dict[str, set[Target]] = {}
        self._inflight: set[Target] = set()
        self._stored: list[Target] = []
        self._flush_scheduled = False
        self._wake = asyncio.Event()
        self._window = asyncio.Semaphore(config.send_window)
        self._tasks = TaskSet("sender")
        self._backoff = INITIAL_BACKOFF

    async def start(self, pending: list[Target]) -> None:
        self.enqueue_targets(pending)
        self._tasks.spawn(self._run(), "sender")
        self._tasks.spawn(self._retry(), "sender-retry")

    async def stop(self) -> None:
        await self._tasks.close()
        self._flush()

    def enqueue(self, items: list[Item]) -> None:
        """Send these frames on every circuit their line has now."""
        self.enqueue_targets(
            [(line_id, seq, url) for line_id, seq in items for url in self._links.circuit_urls(line_id)]
        )

    def enqueue_targets(self, targets: list[Target]) -> None:
        for target in targets:
            if target not in self._queued:
                self._queued.add(target)
                self._queue.append(target)
        if targets:
            self._wake.set()

    def pending(self) -> int:
        return len(self._queue) + len(self._inflight) + sum(len(p) for p in self._parked.values())

    def pending_by_circuit(self) -> dict[tuple[bytes, str], int]:
        """Frames not yet stored by each circuit (queued, in flight or parked), by (line, url)."""
        counts: dict[tuple[bytes, str], int] = {}
        for group in (self._queue, self._inflight, *self._parked.values()):
            for line_id, _, url in group:
                counts[line_id, url] = counts.get((line_id, url), 0) + 1
        return counts

    def on_link_state(self, url: str, up: bool) -> None:
        if up:
            self._unpark(url)

    def forget(self, url: str) -> None:
        """The circuit through ``url`` is gone: drop what was parked for it."""
        self._parked.pop(url, None)

    def _unpark(self, url: str) -> None:
        parked = self._parked.pop(url, set())
        if parked:
            self.enqueue_targets(sorted(parked))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                target = self._queue.popleft()
                self._queued.discard(target)
                line_id, seq, url = target
                if not self._frames.may_send(line_id, seq):
                    continue  # re-enqueued by the station when the line opens
                send_id = self._links.send_id(line_id, url)
                if send_id is None or target in self._inflight:
                    continue  # the circuit was removed, or this very send is under way
                await self._window.acquire()
                self._inflight.add(target)
                self._tasks.spawn(self._send_one(target, send_id), "sender-send")

    async def _send_one(self, target: Target, send_id: bytes) -> None:
        line_id, seq, url = target
        try:
            fragments, precedence = self._frames.wire_frames(line_id, seq, url)
            sends = [self.wire.send_frame(line_id, url, send_id, f, precedence) for f in fragments]
            # All fragments at once (pipelined on the link, queued in order at a pacer); the
            # entry is stored on the circuit only if every one is.
            results = await asyncio.gather(*sends, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except BackchannelError as exc:
            if not isinstance(exc, TransportError):
                log.warning("relay %s refused frame %d: %s", url, seq, exc)
            self._parked.setdefault(url, set()).add(target)
        else:
            self._backoff = INITIAL_BACKOFF
            self._stored.append(target)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        finally:
            self._inflight.discard(target)
            self._window.release()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._stored:
            batch, self._stored = self._stored, []
            try:
                self._frames.mark_sent(batch)
            except BackchannelError as exc:  # only bookkeeping: a resend is harmless
                log.warning("could not record relayed frames: %s", exc)

    async def _retry(self) -> None:
        while True:
            await asyncio.sleep(self._backoff)
            if any(self._parked.values()):
                self._backoff = next_backoff(self._backoff, self._config.retry_max_seconds)
                for url in list(self._parked):
                    if self._links.connected(url):
                        self._unpark(url)


class Waiters:
    """Futures that complete when a sent message reaches a status (used by ``send --wait``).

    Status changes are noted inside the station's transaction and released by :meth:`flush`
    only after the commit, so nobody is told "delivered" before it is on disk.
    """

    def __init__(self) -> None:
        self._waiting: dict[bytes, dict[int, list[tuple[int, asyncio.Future[None]]]]] = {}
        self._due: list[tuple[bytes, int, int, asyncio.Future[None]]] = []

    def register(self, line_id: bytes, seq: int, level: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(line_id, {}).setdefault(seq, []).append((LEVELS[level], future))
        return future

    def reached(self, line_id: bytes, seq: int, level: str) -> None:
        self._collect(line_id, [seq], LEVELS[level])
        if level == "relayed":
            self.flush()

    def reached_upto(self, line_id: bytes, upto: int, level: str) -> None:
        by_seq = self._waiting.get(line_id)
        if by_seq:
            self._collect(line_id, [s for s in by_seq if s <= upto], LEVELS[level])

    def incoming(self, line_id: bytes, seq: int) -> None:
        """Hook for watchers of incoming messages (the console's live view)."""

    def _collect(self, line_id: bytes, seqs: list[int], rank: int) -> None:
        by_seq = self._waiting.get(line_id)
        if not by_seq:
            return
        for seq in seqs:
            waiting = by_seq.get(seq, [])
            keep = [(r, f) for r, f in waiting if r > rank]
            self._due.extend((line_id, seq, r, f) for r, f in waiting if r <= rank)
            if keep:
                by_seq[seq] = keep
            else:
                by_seq.pop(seq, None)

    def flush(self) -> None:
        due, self._due = self._due, []
        for _, _, _, future in due:
            if not future.done():
                future.set_result(None)

    def rollback(self) -> None:
        """The transaction that reached these statuses failed: keep the waiters waiting."""
        due, self._due = self._due, []
        for line_id, seq, rank, future in due:
            self._waiting.setdefault(line_id, {}).setdefault(seq, []).append((rank, future))

    def fail_all(self, exc: BaseException) -> None:
        for by_seq in self._waiting.values():
            for waiting in by_seq.values():
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
        self._waiting.clear()
