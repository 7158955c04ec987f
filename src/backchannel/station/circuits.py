"""Changing a line's circuits in band: add a relay, remove one; both stations apply it.

Adding: we create our own mailbox on the new relay and send its send capability in a
``circuits`` payload (sealed, ordered and recorded like any entry); the peer adds it and
answers with its own mailbox there. Removing: we tell the peer, then stop using the relay
ourselves. A received change is bounded: never more than 8 circuits, never the last one.

When *we* remove a circuit, our own mailbox on that relay is *retired*, not forgotten: we keep
reading it (for ``RETIRED_READ_SECONDS``, also across restarts), because a peer that refused the
removal (two operators removing the two circuits of a line at once) keeps sending there. When
the *peer* removes one, it sends nothing more there once it has sealed the change, and every
frame before the change also went on the other circuits, so our mailbox there is forgotten (the
running connection still drains it). Either way the mailbox no longer counts as the line's
circuit, so the relay can be added again later, with fresh mailboxes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from backchannel.errors import BackchannelError, InvalidArgument
from backchannel.proto.invitation import MAX_RELAYS, MailboxCapability
from backchannel.proto.payloads import Circuits
from backchannel.station.liveline import LiveLine
from backchannel.station.pairing import relay_list
from backchannel.station.relay_url import named, shown
from backchannel.station.views import LineView

if TYPE_CHECKING:
    from backchannel.station.station import Station

log = logging.getLogger("backchannel.station")

#: How long a station keeps reading its mailbox on a relay it removed from a line (14 days, a
#: relay's default expiry): long enough for any frame sent there before the removal.
RETIRED_READ_SECONDS = 14 * 24 * 3600.0


class CircuitChanges:
    def __init__(self, station: Station) -> None:
        self._s = station

    async def add(self, line: str, relay: str) -> LineView:
        """Add a circuit through another relay: our mailbox there, offered to the peer in-band."""
        live = self._s._line(line)
        (url,) = relay_list(relay)
        if any(u == url for lid, u, _, _ in self._s._store.mailboxes() if lid == live.line_id):
            raise InvalidArgument(f"line {live.row.name!r} already has a circuit through {shown(url)}")
        recv_id, recv_seed, send_id, send_seed = await self._s._new_mailbox(url)
        with self._s._mutation():
            self._s._store.add_mailbox(
                live.line_id, url, recv_id, self._s._atrest.seal(recv_seed, b"recv-key" + recv_id)
            )
            change = Circuits((MailboxCapability(url, send_id, send_seed),), ())
            seq = self._s.send_payload(live.line_id, change, "circuits", enqueue=False)
        self._s.sender.enqueue([(live.line_id, seq)])
        self._s._subscribe(url, recv_id, recv_seed)
        return self._s._line_view(live)

    async def remove(self, line: str, relay: str) -> LineView:
        """Stop using a relay for this line, on both sides (told to the peer in-band)."""
        live = self._s._line(line)
        matches = named(relay, self._s.circuit_urls(live.line_id))
        if not matches:
            raise InvalidArgument(f"line {live.row.name!r} has no circuit through {shown(relay)}")
        if len(matches) > 1:
            raise InvalidArgument(
                f"several circuits of line {live.row.name!r} match {shown(relay)}; give the full URL"
            )
        (relay,) = matches
        if len(self._s.circuit_urls(live.line_id)) == 1:
            raise InvalidArgument("a line keeps at least one circuit; add another before removing this one")
        with self._s._mutation():  # tell the peer and stop using it here, in one transaction
            seq = self._s.send_payload(live.line_id, Circuits((), (relay,)), "circuits", enqueue=False)
            self._s._store.remove_circuit(live.line_id, relay, self._s.now(), retire=True)
        self._s._peer_caps.get(live.line_id, {}).pop(relay, None)
        self._s.sender.enqueue([(live.line_id, seq)])
        self._s.monitor.circuits_changed(live.line_id)
        return self._s._line_view(live)

    def apply(self, live: LiveLine, change: Circuits, after: list[Callable[[], object]]) -> None:
        line_id = live.line_id
        ours = {url for lid, url, _, _ in self._s._store.mailboxes() if lid == line_id}
        circuits = set(self._s.circuit_urls(line_id))
        for cap in change.add:
            if cap.url not in circuits and len(circuits) >= MAX_RELAYS:
                self._s._store.count("circuit_limit")  # a peer may not grow a line past 8 circuits
                continue
            circuits.add(cap.url)
            self._s._store.add_peer_mailbox(
                line_id, cap.url, cap.send_id, self._s._atrest.seal(cap.send_key, b"send-key" + cap.send_id)
            )
            after.append(functools.partial(self._s._add_sender, line_id, cap.url, cap.send_id, cap.send_key))
            if cap.url not in ours:  # answer with our own mailbox on that relay
                after.append(functools.partial(self._answer, live.row.name, cap.url))
        for url in change.remove:
            if url not in circuits or len(circuits) == 1:
                self._s._store.count("circuit_refused")  # never remove the last circuit of a line
                continue
            circuits.discard(url)
            self._s._store.remove_circuit(line_id, url, self._s.now(), retire=False)
            after.append(functools.partial(self._s._peer_caps.get(line_id, {}).pop, url, None))
        after.append(functools.partial(self._s.monitor.circuits_changed, line_id))

    def _answer(self, line: str, url: str) -> None:
        """After the commit: offer our own mailbox on the relay the peer added."""

        async def guarded() -> None:
            try:
                await self.add(line, url)
            except BackchannelError as exc:
                log.warning("circuit change failed: %s", exc)

        asyncio.get_running_loop().create_task(guarded())
