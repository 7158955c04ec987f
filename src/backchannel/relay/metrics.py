"""The relay's metrics, in prometheus_client's own registry and exposition format.

Theory of operation
-------------------
The hot paths count in a plain ``dict`` (``counters``: one increment costs nothing worth
measuring); a collector turns it into Prometheus counters, with ``# HELP`` and ``# TYPE``, when
``/metrics`` is scraped. Refusals are also one counter with a ``reason`` label
(``backchannel_relay_refused_total{reason="auth_failed"}``), so one query shows them all.
Latencies are prometheus_client ``Histogram`` objects observed as they happen: a storage
commit (one group-commit transaction) and a request (read to reply queued; a SEND's reply is
its STORED, after the commit). Gauges are read at scrape time: connections, subscriptions,
buffered bytes, and the mailboxes' depth, which asks the database (at most one such read runs
at a time, and a scrape waits for it at most ``DEPTH_TIMEOUT``: a hung database leaves the
depth gauges out of that scrape rather than hanging it). Each relay has its own registry, so
several relays in one process (tests) never mix their figures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from backchannel.aio import TaskSet
from backchannel.errors import BackchannelError
from backchannel.relay.storage_health import KINDS as STORAGE_KINDS

PREFIX = "backchannel_relay_"
#: Seconds a scrape waits for the database to report the mailboxes' depth.
DEPTH_TIMEOUT = 2.0
#: Histogram buckets (seconds): from a fast fsync to a database that hangs.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Every counter: its short name and what it counts (its ``# HELP``).
COUNTERS: dict[str, str] = {
    "connections": "WebSocket connections accepted",
    "frames_in": "WebSocket messages received",
    "malformed": "Undecodable frames, text messages and frames of a relay-only type",
    "unsupported_version": "Frames of a protocol version this relay does not speak",
    "too_large": "Oversized frames (answered TOO_LARGE, or closed with 1009 if enormous)",
    "auth_failed": "SUBSCRIBE/AUTH_SEND/SEND refused: unknown mailbox or bad signature",
    "not_authorised": "SEND/ACK without the capability proven on this connection",
    "mailbox_full": "SENDs refused because the mailbox holds max_mailbox_depth frames",
    "quota": "CREATEs refused because the relay holds max_mailboxes",
    "created": "Mailboxes created",
    "stored": "Frames stored (durable before STORED was answered)",
    "duplicates": "SENDs of a frame already waiting (an idempotent retry)",
    "delivered": "DELIVER frames pushed (first push on a subscription)",
    "redelivered": "DELIVER frames pushed again after redeliver_seconds without an ACK",
    "acked": "Frames deleted on acknowledgement",
    "expired": "Frames deleted unread by the expiry sweep",
    "takeovers": "SUBSCRIBEs that replaced another subscription to the same mailbox",
    "commits": "Group-commit transactions",
    "storage_errors": "Failed storage transactions or reads",
    **{f"storage_errors_{kind}": f"Failed storage operations of kind {kind}" for kind in STORAGE_KINDS},
    "storage_stalls": "Database calls that ran past storage_stall_seconds",
    "storage_episodes": "Periods of failing storage (each logged once)",
    "storage_found_stored": "SENDs of a failed batch found stored when read back (answered STORED)",
    "catch_ups": "Subscriptions made to read their mailbox again from the oldest unacknowledged frame",
    "internal": "Requests answered INTERNAL",
    "token_refused": "CREATEs without the relay's access token (TOKEN_REQUIRED)",
    "create_limit": "CREATEs over a connection's or an address's limit",
    "subscription_limit": "SUBSCRIBEs over a connection's or an address's limit",
    "connection_limit": "Connections refused over the relay-wide or per-address limit",
    "rate_limited": "Requests held back because their address was over its request rate",
    "slow_reader": "Connections dropped for taking nothing for send_timeout_seconds",
    "mailboxes_expired": "Mailboxes deleted unused after mailbox_expiry_seconds",
    "mailboxes_deleted": "Mailboxes deleted by their receiver (DELETE: a rotated mailbox)",
    "deleted_frames": "Frames deleted unread with a mailbox its receiver deleted",
    "listens": "LISTEN connections established to hear other relay processes (PostgreSQL)",
    "listen_failures": "Failed attempts to open or keep the LISTEN connection",
    "notifications_received": "Frames other relay processes announced as stored",
    "catch_up_reads": "Periodic catch-up reads over every subscription (PostgreSQL)",
    "notifications_missed": "Subscriptions a catch-up read found behind: no notification had told them",
}
COUNTER_NAMES = tuple(COUNTERS)

#: The counters that are refusals (an ERROR reply, or a connection refused or dropped), by
#: the ``reason`` label they carry in ``refused_total``.
REFUSALS = (
    "malformed",
    "unsupported_version",
    "too_large",
    "auth_failed",
    "not_authorised",
    "mailbox_full",
    "quota",
    "internal",
    "token_refused",
    "create_limit",
    "subscription_limit",
    "connection_limit",
    "slow_reader",
)

#: The gauges the server reports at scrape time, with their ``# HELP``.
GAUGES: dict[str, str] = {
    "open_connections": "WebSocket connections open",
    "sockets": "TCP sockets counted against the connection limits (including refusals in progress)",
    "subscriptions": "Mailboxes subscribed on this process",
    "client_addresses": "Source addresses the relay keeps state for",
    "send_buffered_bytes": "Bytes queued for clients",
    "in_flight_bytes": "Bytes of SEND payloads read and not yet committed",
}
#: The depth gauges, read from the database: (frames waiting, mailboxes, deepest mailbox).
DEPTH_GAUGES = (
    ("frames_waiting", "Frames stored and not yet acknowledged or expired, all mailboxes"),
    ("mailboxes", "Mailboxes the relay holds"),
    ("mailbox_depth_max", "Frames waiting in the deepest mailbox"),
)


class RelayMetrics:
    def __init__(
        self,
        counters: dict[str, int],
        gauges: Callable[[], dict[str, float]],
        depth: Callable[[], Awaitable[tuple[int, int, int]]],
        tasks: TaskSet,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._tasks = tasks
        self._counters = counters
        self._gauges = gauges
        self._depth = depth
        self._depth_task: asyncio.Task[tuple[int, int, int] | None] | None = None
        self._last_depth: tuple[int, int, int] | None = None
        self.commit_seconds = Histogram(
            PREFIX + "commit_seconds",
            "Storage commit latency: one group-commit transaction, durable when it returns",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            PREFIX + "request_seconds",
            "Request latency, from read to reply queued (a SEND's reply is its STORED, after the commit)",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Collector(self))

    async def exposition(self) -> bytes:
        """The whole registry in the Prometheus text format (reads the depth first)."""
        await self._read_depth()
        return generate_latest(self.registry)

    async def _read_depth(self) -> None:
        if self._depth_task is None or self._depth_task.done():
            self._depth_task = self._tasks.spawn(self._depth_or_none(), "relay-metrics-depth")
        self._last_depth = None
        with contextlib.suppress(TimeoutError):
            self._last_depth = await asyncio.wait_for(asyncio.shield(self._depth_task), DEPTH_TIMEOUT)

    async def _depth_or_none(self) -> tuple[int, int, int] | None:
        """The depth read, or None when the database failed it (the scrape leaves it out)."""
        try:
            return await self._depth()
        except BackchannelError:
            return None

    def collect(self) -> Iterator[Metric]:
        for name, help_text in COUNTERS.items():
            family = CounterMetricFamily(PREFIX + name, help_text)
            family.add_metric([], self._counters.get(name, 0))
            yield family
        refused = CounterMetricFamily(
            PREFIX + "refused", "Requests and connections refused, by reason", labels=["reason"]
        )
        for reason in REFUSALS:
            refused.add_metric([reason], self._counters.get(reason, 0))
        yield refused
        for name, value in self._gauges().items():
            yield GaugeMetricFamily(PREFIX + name, GAUGES.get(name, name), value=value)
        if self._last_depth is not None:
            for (name, help_text), value in zip(DEPTH_GAUGES, self._last_depth, strict=True):
                yield GaugeMetricFamily(PREFIX + name, help_text, value=value)


class _Collector:
    """prometheus_client's collector interface over :meth:`RelayMetrics.collect`."""

    def __init__(self, metrics: RelayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()

    def describe(self) -> list[Metric]:
        return []  # (described only when collected: the gauges depend on the moment)
