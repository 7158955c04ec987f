"""Rotating a line's inbound mailboxes: fresh ids and capabilities at every relay, agreed in band.

Theory of operation
-------------------
A relay sees a mailbox's two ids and two public keys on every frame. Left alone they link
every frame of a line for as long as the line lives; rotated, a relay sees one set for a day
and then an unrelated one. Each station rotates *its own* inbound mailboxes (those it
receives on), all circuits of a line at once, on a schedule (``rotate_every``, jittered so the
two stations do not rotate at the same instant) or on demand (``backchannel line rotate``):

1. CREATE a fresh mailbox on every relay of the line (nothing is stored yet: a crash leaves
   unused mailboxes at the relays, which expire there);
2. in ONE transaction: the fresh mailboxes become the line's, the old ones move to
   ``retired_mailboxes`` marked 'rotated' with the sequence number ``n`` of a ``circuits``
   change ``{add: [the fresh send capabilities]}`` sealed in the same transaction;
3. after the commit: send the change, subscribe to the fresh mailboxes, and have a link test
   sent at once (its answer carries the peer's ``seen``).

The peer applies the change with the rule of PROTOCOL §9.2 (an add for a relay it already
sends to replaces the capability; it is not answered): from then on it sends there to the
fresh mailbox, including frames it had queued or parked. The old mailbox is still read. When
an entry of the peer arrives whose ``seen`` covers ``n`` (it applied the change before sealing
that entry), the drain starts; ``rotation_drain_seconds`` later, the old mailbox is DELETEd at
its relay (frames the peer sent there before have arrived; any lost with it are recovered end
to end, PROTOCOL §10.6), and only once the relay answered OK is the retired row forgotten. All
of it is in the store, so a restart resumes every step: a DELETE already done shows as the
relay refusing the SUBSCRIBE of the old mailbox (AUTH), which counts as done.
"""

from __future__ import annotations

import logging
import math

from backchannel.aio import TaskSet
from backchannel.errors import BackchannelError, InvalidArgument, RelayRefused
from backchannel.proto.frames import RelayErrorCode
from backchannel.proto.invitation import MailboxCapability
from backchannel.proto.payloads import Circuits
from backchannel.station.config import StationConfig
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.monitor import Monitor
from backchannel.station.outbox import Outbox
from backchannel.station.reading import Views
from backchannel.station.relay_url import shown
from backchannel.station.store import Store
from backchannel.station.views import LineView

log = logging.getLogger("backchannel.station")

#: The schedule's jitter: each interval is ``rotate_every`` times a factor in [0.9, 1.1].
JITTER = 0.1
#: Seconds before a failed scheduled rotation or DELETE is tried again.
RETRY_SECONDS = 30.0


class Rotations:
    def __init__(
        self,
        lines: Lines,
        links: Links,
        outbox: Outbox,
        monitor: Monitor,
        views: Views,
        store: Store,
        config: StationConfig,
    ) -> None:
        self._lines = lines
        self._links = links
        self._outbox = outbox
        self._monitor = monitor
        self._views = views
        self._store = store
        self._config = config
        self._clock = lines.clock
        self._rng = lines.rng
        self._tasks = TaskSet("rotations")
        #: Lines with a rotation under way (between its first CREATE and its commit).
        self._rotating: set[bytes] = set()
        #: Lines with a rotation the peer has not yet shown it applied (a hint; the store decides).
        self._waiting = {line_id for line_id, _, _, _, at in store.rotated_mailboxes() if at is None}
        #: Retired mailboxes whose DELETE is under way.
        self._deleting: set[bytes] = set()
        #: Since when (monotonic) each relay's link has been up without a break: a rotated
        #: mailbox is drained only by time spent connected, so a DELETE never follows a
        #: reconnection at once (frames sent there while we were away must arrive first).
        self._up_since: dict[str, float] = {}
        links.on_link_state.append(self._link_state)
        #: Monotonic time before which a failed rotation (by line) or DELETE (by recv_id) waits.
        self._retry_at: dict[bytes, float] = {}

    async def close(self) -> None:
        await self._tasks.close()

    # ---- rotating ------------------------------------------------------------------------------

    async def rotate(self, line: str) -> LineView:
        """Rotate the line's inbound mailboxes now (all circuits, one in-band change)."""
        live = self._lines.find(line)
        line_id = live.line_id
        if not live.established:
            raise InvalidArgument(f"line {live.row.name!r} is not established yet; rotate it once paired")
        if line_id in self._rotating:
            raise InvalidArgument(f"a rotation of line {live.row.name!r} is already under way")
        urls = sorted({url for lid, url, _, _ in self._store.mailboxes() if lid == line_id})
        if not urls:
            raise InvalidArgument(f"line {live.row.name!r} has no mailbox of ours to rotate")
        self._rotating.add(line_id)
        try:
            fresh = [(url, *await self._links.new_mailbox(url)) for url in urls]
            now = self._clock.now()
            change = Circuits(tuple(MailboxCapability(u, sid, sseed) for u, _, _, sid, sseed in fresh), ())
            with self._lines.mutation():
                seq = self._outbox.send_payload(line_id, change, "circuits", enqueue=False)
                for url, recv_id, recv_seed, _, _ in fresh:
                    sealed = self._lines.atrest.seal(recv_seed, b"recv-key" + recv_id)
                    self._store.rotate_mailbox(line_id, url, recv_id, sealed, seq, now)
                self._store.set_rotation(line_id, now, now + self._interval())
                self._store.count("mailboxes_rotated", len(fresh))
        finally:
            self._rotating.discard(line_id)
        self._outbox.enqueue([(line_id, seq)])
        for url, recv_id, recv_seed, _, _ in fresh:
            self._links.subscribe(url, recv_id, recv_seed, line_id)
        self._waiting.add(line_id)
        self._monitor.test_soon(line_id)
        log.info("line %s: rotated its mailboxes on %d relays (change %d)", live.row.name, len(fresh), seq)
        return self._views.line_view(live)

    def _interval(self) -> float:
        """``rotate_every`` jittered by ±10 %, from the station's (seedable) rng."""
        fraction = int.from_bytes(self._rng.bytes(4), "big") / 2**32
        return self._config.rotate_every * (1 - JITTER + 2 * JITTER * fraction)

    # ---- the peer applied it -------------------------------------------------------------------

    def peer_seen(self, line_id: bytes, count: int) -> None:
        """Inside a receive transaction: the peer reports ``count`` of our entries received."""
        if line_id not in self._waiting:
            return
        if not self._store.rotation_applied(line_id, count, self._clock.now()):
            return
        if all(at is not None for lid, _, _, _, at in self._store.rotated_mailboxes() if lid == line_id):
            self._waiting.discard(line_id)

    # ---- the schedule and the drain: one look per tick ------------------------------------------

    def tick(self) -> None:
        now, mono = self._clock.now(), self._clock.monotonic()
        if self._config.rotate_every > 0:
            for line_id in self._lines.established():
                self._schedule(line_id, now, mono)
        drain = self._config.rotation_drain_seconds
        for line_id, url, recv_id, _, applied_at in self._store.rotated_mailboxes():
            if applied_at is None:
                self._waiting.add(line_id)
                continue
            if now < applied_at + drain or recv_id in self._deleting or mono < self._retry_at.get(recv_id, 0):
                continue
            if mono < self._up_since.get(url, math.inf) + drain:
                continue  # not yet connected to that relay for a whole drain period
            self._deleting.add(recv_id)
            self._tasks.spawn(self._delete(url, recv_id), f"rotation delete {shown(url)}")

    def _link_state(self, url: str, up: bool) -> None:
        if up:
            self._up_since.setdefault(url, self._clock.monotonic())
        else:
            self._up_since.pop(url, None)

    def _schedule(self, line_id: bytes, now: float, mono: float) -> None:
        found = self._store.rotation(line_id)
        if found is None:  # a new line (or one from before rotation): its first is one interval away
            with self._store.transaction():
                self._store.set_rotation(line_id, None, now + self._interval())
            return
        if now < found[1] or line_id in self._rotating or mono < self._retry_at.get(line_id, 0):
            return
        self._rotating.add(line_id)  # (rotate() takes it over at once)
        self._tasks.spawn(self._scheduled(line_id), "scheduled rotation")

    async def _scheduled(self, line_id: bytes) -> None:
        self._rotating.discard(line_id)
        try:
            await self.rotate(line_id.hex())
        except BackchannelError as exc:
            self._retry_at[line_id] = self._clock.monotonic() + RETRY_SECONDS
            log.warning(
                "line %s: the scheduled mailbox rotation failed (retried): %s", line_id.hex()[:8], exc
            )

    async def _delete(self, url: str, recv_id: bytes) -> None:
        """DELETE a drained rotated mailbox at its relay; forget it once the relay said OK."""
        try:
            link = self._links.link(url)
            await link.wait_connected(link.request_timeout)
            if not _gone(link.registration_errors.get(recv_id)):
                try:
                    await link.delete_mailbox(recv_id)
                except RelayRefused:
                    if not _gone(link.registration_errors.get(recv_id)):
                        raise
            link.unsubscribe(recv_id)
            with self._store.transaction():
                self._store.forget_rotated(recv_id)
                self._store.count("mailboxes_deleted")
            self._retry_at.pop(recv_id, None)
            log.info("relay %s: deleted a rotated mailbox", shown(url))
        except BackchannelError as exc:
            self._retry_at[recv_id] = self._clock.monotonic() + min(
                RETRY_SECONDS, 1 + self._config.rotation_drain_seconds
            )
            log.info("relay %s: DELETE of a rotated mailbox failed (retried): %s", shown(url), exc)
        finally:
            self._deleting.discard(recv_id)


def _gone(refusal: BackchannelError | None) -> bool:
    """Whether the relay refused the mailbox's SUBSCRIBE as unknown: deleted (or expired) already."""
    return isinstance(refusal, RelayRefused) and refusal.relay_code == RelayErrorCode.AUTH
