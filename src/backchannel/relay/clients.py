"""Who the relay is serving: sockets and source addresses, counted against the limits.

Theory of operation
-------------------
A *client* is a connection, or a source address (:class:`Client` counts what all connections
from one address hold). :class:`Clients` is the relay's :class:`~backchannel.relay.sockets.SocketWatch`:
it counts every TCP socket from the moment it is accepted (so handshakes never finished count
too) against the per-address and relay-wide connection limits, lets a few sockets over them
through to be told why (TOO_MANY_CONNECTIONS), and refuses any other at once. It also keeps
each address's request rate (a token bucket: an address over it is paced, never refused), its
recent CREATEs, and its byte budgets; an address that holds nothing any more is forgotten.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import deque
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_authorization_basic
from websockets.http11 import Request

from backchannel.clock import Clock
from backchannel.proto import frames
from backchannel.relay.config import RelayConfig
from backchannel.relay.connection import AddressBudget

#: Sockets over the connection limits that still get a TOO_MANY_CONNECTIONS error (per
#: address, and relay-wide); beyond them a socket is closed as soon as it is accepted.
REFUSAL_SLACK_PER_ADDRESS = 4
REFUSAL_SLACK_TOTAL = 32

#: Requests that make the relay verify an Ed25519 signature (about 0.1 ms of CPU each), and
#: what each costs in an address's request-rate bucket, against 1 for any other request.
SIGNED_REQUESTS = frozenset({frames.FrameType.CREATE, frames.FrameType.SUBSCRIBE, frames.FrameType.AUTH_SEND})
SIGNED_REQUEST_COST = 20


@dataclass(eq=False)
class Client:
    """What all connections from one source address hold, for the per-address limits."""

    #: Sockets from this address within the connection limits (counted from TCP accept, so
    #: handshakes never finished count too), and sockets over them that are being refused.
    connections: int = 0
    refusing: int = 0
    #: Connections whose handler runs (the record must outlive them all).
    handlers: int = 0
    subscriptions: int = 0
    #: Monotonic times of the CREATEs accepted within ``create_window_seconds``.
    creates: deque[float] = field(default_factory=deque)
    #: Request-rate token bucket: tokens left, and when they were last topped up.
    tokens: float = 0.0
    topped_up: float = 0.0
    #: Bytes queued for and held from all this address's connections together.
    budget: AddressBudget = field(default_factory=AddressBudget)

    def token_wait(self, now: float, rate: float, burst: int, cost: int) -> float:
        """Take ``cost`` tokens and return 0, or return how long until there are enough."""
        self.tokens = min(float(burst), self.tokens + (now - self.topped_up) * rate)
        self.topped_up = now
        if self.tokens < cost:
            return (cost - self.tokens) / rate
        self.tokens -= cost
        return 0.0

    def recent_creates(self, now: float, window: float) -> int:
        while self.creates and self.creates[0] <= now - window:
            self.creates.popleft()
        return len(self.creates)

    def idle(self, now: float, config: RelayConfig) -> bool:
        """Nothing to remember: no connection, no recent CREATE, a full token bucket."""
        full = self.tokens + (now - self.topped_up) * config.requests_per_second >= config.request_burst
        recent = self.recent_creates(now, config.create_window_seconds)
        held = self.connections or self.refusing or self.handlers or self.subscriptions
        return not held and recent == 0 and full


class Clients:
    """Every source address the relay serves, and every socket counted against the limits."""

    def __init__(self, config: RelayConfig, clock: Clock, counters: dict[str, int]) -> None:
        self.config = config
        self._clock = clock
        self._counters = counters
        #: TCP sockets within the relay-wide limit, and sockets over it being refused.
        self.sockets = 0
        self.refusing = 0
        #: Every socket counted: its client address, and whether it is within the limits.
        self._counted: dict[ServerConnection, tuple[str, bool]] = {}
        self.by_address: dict[str, Client] = {}

    def __getitem__(self, address: str) -> Client:
        return self.by_address[address]

    def __len__(self) -> int:
        return len(self.by_address)

    # ---- sockets (SocketWatch: called by sockets.counted_connection) ---------------------

    def accepted(self, conn: ServerConnection) -> bool:
        """Count a socket the moment it is accepted: within the limits, or among the few over
        them that are told why (TOO_MANY_CONNECTIONS); any other is refused at once."""
        address = address_of(conn)
        client = self.by_address.setdefault(address, self._new_client())
        config = self.config
        if client.connections < config.max_connections_per_address and self.sockets < config.max_connections:
            client.connections += 1
            self.sockets += 1
            self._counted[conn] = (address, True)
            return True
        self._counters["connection_limit"] += 1
        if client.refusing < REFUSAL_SLACK_PER_ADDRESS and self.refusing < REFUSAL_SLACK_TOTAL:
            client.refusing += 1
            self.refusing += 1
            self._counted[conn] = (address, False)
            return True
        self.forget_if_idle(address)
        return False

    def gone(self, conn: ServerConnection) -> None:
        entry = self._counted.pop(conn, None)
        if entry is None:
            return
        address, within = entry
        client = self.by_address[address]
        if within:
            client.connections -= 1
            self.sockets -= 1
        else:
            client.refusing -= 1
            self.refusing -= 1
        self.forget_if_idle(address)

    def overfed(self, conn: ServerConnection) -> None:
        """A client left more than ``max_send_buffer_bytes`` unread (e.g. the PONGs to a PING
        flood): it is dropped as a slow reader."""
        self._counters["slow_reader"] += 1

    def counted(self, conn: ServerConnection) -> tuple[str, bool] | None:
        """The socket's address and whether it is within the limits (None: not counted)."""
        return self._counted.get(conn)

    # ---- addresses ---------------------------------------------------------------------

    def _new_client(self) -> Client:
        return Client(
            tokens=float(self.config.request_burst),
            topped_up=self._clock.monotonic(),
            budget=AddressBudget(
                self.config.max_send_buffer_bytes_per_address, self.config.max_in_flight_bytes_per_address
            ),
        )

    def refusal(self, client: Client) -> str:
        """Why a socket over the limits is refused (it was counted over them when accepted)."""
        if client.connections >= self.config.max_connections_per_address:
            limit = self.config.max_connections_per_address
            return f"this relay allows {limit} connections from one address; close one first"
        return f"this relay holds its maximum of {self.config.max_connections} connections; retry later"

    def forget_if_idle(self, address: str) -> None:
        client = self.by_address.get(address)
        if client is not None and client.idle(self._clock.monotonic(), self.config):
            del self.by_address[address]

    def forget_idle(self) -> None:
        """Forget every address that holds nothing (the expiry sweep calls this)."""
        now = self._clock.monotonic()
        for address in [a for a, c in self.by_address.items() if c.idle(now, self.config)]:
            del self.by_address[address]

    def token_presented(self, request: Request | None) -> bool:
        """Did the handshake carry the access token (as the password of HTTP Basic credentials,
        which a client sends for ``ws://:TOKEN@host:port``)? Always True without a token."""
        token = self.config.access_token
        if not token:
            return True
        header = request.headers.get("Authorization") if request is not None else None
        if not header:
            return False
        try:
            _, given = parse_authorization_basic(header)
        except InvalidHeader:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())

    async def pace(self, address: str, message: str | bytes) -> None:
        """Hold the next request until its address's token bucket has room: a client over
        ``requests_per_second`` is slowed (its connections stop being read, and TCP pushes back
        on it), never refused, so a busy line is only paced and loses nothing to redelivery.
        A request that makes the relay check a signature costs ``SIGNED_REQUEST_COST`` tokens,
        since that is where its CPU goes."""
        client = self.by_address[address]
        cost = SIGNED_REQUEST_COST if peek_type(message) in SIGNED_REQUESTS else 1
        rate, burst = self.config.requests_per_second, self.config.request_burst
        slowed = False
        while (wait := client.token_wait(self._clock.monotonic(), rate, burst, cost)) > 0:
            if not slowed:
                self._counters["rate_limited"] += 1
                slowed = True
            await asyncio.sleep(wait)

    def buffered_bytes(self) -> tuple[int, int]:
        """Bytes queued for all clients, and bytes of SEND payloads held from them."""
        budgets = [c.budget for c in self.by_address.values()]
        return sum(b.buffered for b in budgets), sum(b.held for b in budgets)


def address_of(ws: ServerConnection) -> str:
    """The client's source address (host only: one host's connections share its limits)."""
    try:
        remote = ws.remote_address
    except Exception:
        return "?"
    return str(remote[0]) if remote else "?"


def peek_type(message: str | bytes) -> int:
    """The frame type byte of a request, before it is decoded (0 if there is none)."""
    return message[1] if isinstance(message, bytes) and len(message) >= 2 else 0
