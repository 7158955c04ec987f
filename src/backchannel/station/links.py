"""The links port: the station's connections to relays, its mailboxes there, the flood guard.

Theory of operation
-------------------
One :class:`~backchannel.station.relay_link.RelayLink` per relay, opened on first use. Each
of our inbound mailboxes is *subscribed* on its relay (frames arrive in one shared queue,
:attr:`Links.deliveries`); each of the peer's mailboxes we may send to is a *sender* there,
and the set of those per line is the line's circuits. A link nothing uses any more (a removed
circuit) is closed, not kept or re-established forever. A relay that floods the station with
frames it has to drop is suspended for a while (``station.flood``).

This is the narrow port for everything that talks about relays; the station's parts receive
it instead of the facade.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

from backchannel.aio import TaskSet
from backchannel.clock import Clock, Rng
from backchannel.errors import BackchannelError
from backchannel.proto.primitives import ed25519_public_from_seed, ed25519_sign
from backchannel.station.config import StationConfig
from backchannel.station.flood import FloodGuard
from backchannel.station.keystore import AtRest
from backchannel.station.relay_link import Delivery, ReceiveLimit, RelayLink
from backchannel.station.relay_trust import RelayTrust
from backchannel.station.relay_url import shown
from backchannel.station.store import Store
from backchannel.tls import relay_target

log = logging.getLogger("backchannel.station")

#: Seconds over which a relay's useless frames are counted (see ``station.flood``).
FLOOD_WINDOW = 10.0


class Links:
    """The station's relay connections, mailboxes and circuits."""

    def __init__(self, config: StationConfig, store: Store, clock: Clock, rng: Rng) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._rng = rng
        self._links: dict[str, RelayLink] = {}
        #: Our recv_id -> (the line it belongs to, relay url): a frame says neither (§10.2).
        self._mailboxes: dict[bytes, tuple[bytes, str]] = {}
        self._peer_caps: dict[bytes, dict[str, bytes]] = {}  # line -> circuit url -> send id
        #: Unbounded as a queue, bounded in fact: each link puts at most its ReceiveLimit.
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self.flood = FloodGuard(config.flood_limit, FLOOD_WINDOW, config.flood_suspend_seconds)
        #: Link start-ups, ended by close(); links being closed (a removed circuit) are waited
        #: for on their own.
        self._tasks = TaskSet("relay links")
        self._closing = TaskSet("closing relay links")
        #: Told when a relay connection goes up or down: (url, up).
        self.on_link_state: list[Callable[[str, bool], None]] = []
        #: Told when a relay is suspended for flooding: (url, useless frames, until).
        self.on_flooded: list[Callable[[str, int, float], None]] = []
        #: Told when the station refuses a relay (a pin mismatch, a plain URL): (url, why).
        self.on_refused: list[Callable[[str, BackchannelError], None]] = []
        #: Told when the link to a relay is closed for good (nothing uses it).
        self.on_released: list[Callable[[str], None]] = []

    # ---- connections -------------------------------------------------------------------------

    def link(self, url: str) -> RelayLink:
        """The link to ``url``, connecting on first use."""
        link = self._links.get(url)
        if link is None:
            link = RelayLink(
                url,
                self.deliveries,
                clock=self._clock,
                on_connected=functools.partial(self._link_state, url),
                request_timeout=self._config.relay_request_timeout,
                receive_limit=ReceiveLimit(self._config.receive_frames, self._config.receive_bytes),
                trust=RelayTrust(
                    url, shown(url), self._config.allow_plain, functools.partial(self._link_refused, url)
                ),
            )
            self._links[url] = link
            self._tasks.spawn(link.start(), "relay-link start")
        return link

    def _link_refused(self, url: str, refusal: BackchannelError) -> None:
        for listener in self.on_refused:
            listener(url, refusal)

    def _link_state(self, url: str, up: bool) -> None:
        for listener in self.on_link_state:
            listener(url, up)

    def has(self, url: str) -> bool:
        return url in self._links

    def connected(self, url: str) -> bool:
        link = self._links.get(url)
        return link is not None and link.connected

    def links_open(self) -> int:
        return len(self._links)

    def release_link(self, url: str) -> None:
        """Close the link to a relay nothing uses any more (a removed circuit): no connection
        is kept, nor re-established forever, to a relay the line left."""
        link = self._links.get(url)
        if link is None or link.in_use():
            return
        del self._links[url]
        self.flood.forget(url)
        for listener in self.on_released:
            listener(url)
        self._closing.spawn(link.close(), f"relay-link close {link.shown_url}")

    async def close(self) -> None:
        await self._tasks.close()
        for link in self._links.values():
            await link.close()
        self._links.clear()
        await self._closing.join()

    # ---- mailboxes and circuits --------------------------------------------------------------

    async def new_mailbox(self, url: str) -> tuple[bytes, bytes, bytes, bytes]:
        """Create one of our inbound mailboxes; returns (recv_id, recv_seed, send_id, send_seed)."""
        relay_target(url, self._config.allow_plain)  # (a URL the station refuses: say so now)
        recv_seed, send_seed = self._rng.bytes(32), self._rng.bytes(32)
        link = self.link(url)
        recv_id, send_id = await link.create_mailbox(
            ed25519_public_from_seed(recv_seed), ed25519_public_from_seed(send_seed)
        )
        return recv_id, recv_seed, send_id, send_seed

    def subscribe(self, url: str, recv_id: bytes, seed: bytes, line_id: bytes) -> None:
        """Receive from our mailbox ``recv_id`` of ``line_id`` on ``url``."""
        self.note_mailbox(recv_id, url, line_id)
        self.link(url).subscribe(recv_id, functools.partial(ed25519_sign, seed))

    def add_sender(self, line_id: bytes, url: str, send_id: bytes, seed: bytes) -> None:
        """The peer's mailbox ``send_id`` on ``url`` becomes a circuit of the line."""
        self.note_circuit(line_id, url, send_id)
        self.link(url).add_sender(send_id, functools.partial(ed25519_sign, seed))

    def open_mailboxes(self, atrest: AtRest) -> None:
        """At start: receive from every mailbox of ours (retired ones too), send to the peers'."""
        store = self._store
        for line_id, url, recv_id, recv_sealed in store.mailboxes() + store.mailboxes(retired=True):
            self.subscribe(url, recv_id, atrest.open(recv_sealed, b"recv-key" + recv_id), line_id)
        for line_id, url, send_id, send_sealed in store.peer_mailboxes():
            self.add_sender(line_id, url, send_id, atrest.open(send_sealed, b"send-key" + send_id))

    def note_mailbox(self, recv_id: bytes, url: str, line_id: bytes) -> None:
        """Bookkeeping only: frames from ``recv_id`` come through ``url`` for ``line_id``."""
        self._mailboxes[recv_id] = (line_id, url)

    def mailbox(self, recv_id: bytes) -> tuple[bytes, str] | None:
        """(line, relay url) of our mailbox ``recv_id`` (current or retired), None if not ours:
        the only way a received frame says which line and circuit it belongs to."""
        return self._mailboxes.get(recv_id)

    def note_circuit(self, line_id: bytes, url: str, send_id: bytes) -> None:
        """Bookkeeping only: the line sends through ``url`` to the peer's ``send_id``."""
        self._peer_caps.setdefault(line_id, {})[url] = send_id

    def drop_circuit(self, line_id: bytes, url: str) -> None:
        """Stop sending this line's frames through ``url`` (the mailbox stays until forgotten)."""
        self._peer_caps.get(line_id, {}).pop(url, None)

    def forget_circuit(self, line_id: bytes, url: str, send_id: bytes | None, recv_ids: list[bytes]) -> None:
        """A removal by the peer is committed: stop using the relay, close its link if unused."""
        self.drop_circuit(line_id, url)
        link = self._links.get(url)
        if link is not None:
            if send_id is not None and not any(caps.get(url) == send_id for caps in self._peer_caps.values()):
                link.remove_sender(send_id)
            for recv_id in recv_ids:
                link.unsubscribe(recv_id)
        self.release_link(url)

    def circuit_urls(self, line_id: bytes) -> list[str]:
        """The relays this line's frames go through: one circuit each."""
        return sorted(self._peer_caps.get(line_id, {}))

    def send_id(self, line_id: bytes, url: str) -> bytes | None:
        return self._peer_caps.get(line_id, {}).get(url)

    # ---- received frames ---------------------------------------------------------------------

    def source(self, delivery: Delivery) -> tuple[bool, str | None]:
        """(may the relay deliver for this mailbox, the circuit it came through)."""
        link = delivery.link
        if link is not None:
            return link.receives(delivery.recv_id), link.url
        known = self._mailboxes.get(delivery.recv_id)
        return True, known[1] if known is not None else None

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge to the relay that delivered it (only for a mailbox it serves us)."""
        link = delivery.link
        if link is None:
            known = self._mailboxes.get(delivery.recv_id)
            link = self._links.get(known[1]) if known is not None else None
        if link is not None and link.receives(delivery.recv_id):
            link.ack_soon(delivery.recv_id, delivery.msg_id)

    def check_floods(self) -> None:
        """Suspend every relay whose useless frames reached the limit (``station.flood``)."""
        now = self._clock.now()
        for url, useless, seconds in self.flood.tripped(now):
            link = self._links.get(url)
            if link is None:
                continue
            log.error(
                "relay %s flooded this station with %d frames it had to drop within %g s; "
                "not connecting to it for %g s",
                url,
                useless,
                FLOOD_WINDOW,
                seconds,
            )
            link.suspend(seconds)
            with contextlib.suppress(BackchannelError), self._store.transaction(durable=False):
                self._store.count("relay_suspended")
            for listener in self.on_flooded:
                listener(url, useless, now + seconds)
