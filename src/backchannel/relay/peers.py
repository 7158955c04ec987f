"""The other relay processes on one PostgreSQL database: hearing the frames they store.

Theory of operation
-------------------
Several relay processes may serve the same mailboxes from one PostgreSQL database. A frame
stored through one process must reach a subscriber connected to another, promptly, and a
notification lost on the way must only delay it. Two paths, each enough on its own:

- *Notifications.* Every batch that stores frames sends one ``NOTIFY`` per frame inside its
  transaction (``storage/postgres.py``); PostgreSQL delivers it to every listening session
  once the transaction has committed. :meth:`PeerWatch.listen` holds one ``LISTEN``
  connection (psycopg's async connection, on the event loop) and hands each notification
  from another process to its subscription (:meth:`Deliveries.maybe_stranded`): a frame
  beyond what the subscription pushed wakes its pump; one *behind* it (a commit of another
  process that landed after a later one) makes the pump read the mailbox again from its
  oldest frame. Whenever the listening connection is (re)established, notifications may
  have been lost meanwhile, so every subscription catches up.
- *Catch-up reads.* Every ``catch_up_interval_seconds``, one query (:meth:`survey`) asks,
  for every subscription here, how many frames wait at or before its cursor and how new the
  newest is. More frames behind the cursor than it awaits, or a newest frame beyond it while
  its pump believes it has pushed everything, means a frame nobody told it of: that
  subscription reads its mailbox again (``notifications_missed``).

ACKs need no notice: an ACK is accepted only on the connection that subscribed, so on the
process that pushed the frame, and it deletes the row, which every other process's reads and
redeliveries then no longer find. Pushing a frame twice (two processes with a subscription
each, for a moment) is the relay's at-least-once delivery; stations drop the copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from backchannel.errors import BackchannelError, StorageError
from backchannel.relay.config import RelayConfig
from backchannel.relay.database import Database
from backchannel.relay.delivery import Deliveries
from backchannel.relay.storage.postgres import CHANNEL, PostgresMailboxStore, redacted

_LOG = logging.getLogger("backchannel.relay")

#: Waits between attempts to (re)open the listening connection, in seconds.
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


class PeerWatch:
    """Listens for the frames other processes store, and catches up on what it missed."""

    def __init__(
        self,
        config: RelayConfig,
        db: Database,
        store: PostgresMailboxStore,
        deliveries: Deliveries,
        counters: dict[str, int],
    ) -> None:
        self.config = config
        self._db = db
        self._store = store
        self._deliveries = deliveries
        self._counters = counters
        #: Set while the listening connection holds its LISTEN (tests and logs look at it).
        self.listening = asyncio.Event()

    # ---- notifications -----------------------------------------------------------------

    async def listen(self) -> None:
        """Hold a LISTEN connection until cancelled; open it again whenever it fails."""
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._store.url,
                    autocommit=True,
                    connect_timeout=10,
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
                )
            except psycopg.Error as exc:
                failures = self._failed(failures, exc)
                await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1])
                continue
            try:
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        _LOG.info("relay: listening for other relay processes' frames again")
                    failures = 0
                    self._counters["listens"] += 1
                    self.listening.set()
                    # What was stored while nobody here listened was announced to nobody.
                    self._deliveries.catch_up_all()
                    async for notice in conn.notifies():
                        self.heard(notice.payload)
            except psycopg.Error as exc:
                failures = self._failed(failures, exc)
            finally:
                self.listening.clear()
            await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1])

    def _failed(self, failures: int, exc: psycopg.Error) -> int:
        if failures == 0:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _LOG.warning(
                "relay: cannot listen for other relay processes' frames on %s (%s); "
                "catch-up reads every %g s deliver them meanwhile",
                redacted(self._store.url),
                detail,
                self.config.catch_up_interval_seconds,
            )
        self._counters["listen_failures"] += 1
        return failures + 1

    def heard(self, payload: str) -> None:
        """One notification: ``ORIGIN RECV_ID SEQ MSG_ID`` (ids in hex)."""
        try:
            origin, recv_hex, seq_text, msg_hex = payload.split(" ")
            recv_id, seq, msg_id = bytes.fromhex(recv_hex), int(seq_text), bytes.fromhex(msg_hex)
        except ValueError:
            _LOG.warning("relay: ignored a malformed notification on %s", CHANNEL)
            return
        if origin == self._store.origin:
            return  # stored here: already pushed from memory, or its pump was woken
        self._counters["notifications_received"] += 1
        self._deliveries.maybe_stranded(recv_id, seq, msg_id)

    # ---- catch-up reads ----------------------------------------------------------------

    async def catch_up_forever(self) -> None:
        """Every ``catch_up_interval_seconds``: find the frames no notification announced."""
        while True:
            await asyncio.sleep(self.config.catch_up_interval_seconds)
            with contextlib.suppress(BackchannelError):
                await self.catch_up()

    async def catch_up(self) -> int:
        """One catch-up read over every subscription; returns how many had missed a frame."""
        subs = list(self._deliveries.subs.values())
        if not subs:
            return 0
        seen = {sub.recv_id: (sub, sub.window.cursor, sub.window.unacked) for sub in subs}
        try:
            rows = await self._db.run(self._store.survey, [(r, c) for r, (_, c, _) in seen.items()])
        except StorageError as exc:
            self._db.health.failed("a catch-up read", exc)
            raise
        self._counters["catch_up_reads"] += 1
        missed = 0
        for recv_id, behind, newest in rows:
            sub, _, awaited = seen[recv_id]
            if self._deliveries.get(recv_id) is not sub:
                continue  # ended meanwhile
            if behind > awaited:
                missed += 1  # a frame at or before the cursor that was never pushed here
                self._counters["catch_ups"] += 1
                sub.catch_up()
            elif newest > sub.window.cursor and sub.caught_up:
                missed += 1  # its pump believes it pushed everything: nobody woke it
                sub.caught_up = False
                sub.poke()
        self._counters["notifications_missed"] += missed
        return missed
