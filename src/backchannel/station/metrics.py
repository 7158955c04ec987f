"""The station's metrics, in prometheus_client's registry, on a listener of their own.

Theory of operation
-------------------
Counts come from the store: the rooms note what a transaction did (a message sealed,
received, delivered; an alarm raised) and the store hands the notes over only after the
COMMIT succeeded, with the COMMIT's duration (``store.base.Committed``). So a counter never
counts what a crash or a rollback undid, and the hot paths gain no code of their own. The
send-to-delivered latency is the time from sealing a message to storing its *delivered*
receipt, both on this station's clock. Gauges are read at scrape time from the parts that
know them: frames each circuit has not yet stored (``delivery.Sender``), each circuit's
health (the line's link watch) and connection (``links``), open alarms by kind.

What the metrics show: counts, latencies and states, labelled by the line's **local name**
(the operator's own name for it) and the relay's host and port (no access token, no pin).
Never a message's text, precedence or sequence number, never a key. Those labels are traffic
analysis for whoever reads them, so the listener is separate from everything else, serves
only ``/metrics``, is refused beyond loopback without a bearer token (``config.py``), and
compares the token in constant time.

The listener is a :class:`~backchannel.station.runner.Service` started by ``station run``
when ``[station.metrics] listen`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from backchannel import metrics_http
from backchannel.errors import TransportError
from backchannel.proto.engine.linkcheck import Health
from backchannel.station.config import StationConfig, listen_address
from backchannel.station.delivery import Sender
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.relay_url import shown
from backchannel.station.store import Committed, Store

if TYPE_CHECKING:
    from backchannel.station.station import Station

log = logging.getLogger("backchannel.station.metrics")

PREFIX = "backchannel_station_"
#: Seconds from sending a message to its delivered receipt: a line on loopback answers in
#: milliseconds, one through a relay that was down in minutes.
DELIVERED_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
#: Seconds of one store COMMIT (an fsync when durable).
COMMIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)


def relay_label(url: str) -> str:
    """A circuit's relay as a label: the URL without access token and without pin."""
    return shown(url).partition("#")[0]


class StationMetrics:
    """The station's registry: counters fed by the store's commits, gauges read at scrape."""

    def __init__(self, lines: Lines, links: Links, sender: Sender, store: Store) -> None:
        self._lines = lines
        self.registry = CollectorRegistry()
        by_line = ("line",)
        self.sent = Counter(
            PREFIX + "messages_sent", "Operator messages sealed and queued", by_line, registry=self.registry
        )
        self.received = Counter(
            PREFIX + "messages_received",
            "Operator messages received and stored",
            by_line,
            registry=self.registry,
        )
        self.delivered = Counter(
            PREFIX + "messages_delivered",
            "Sent messages whose delivered receipt arrived",
            by_line,
            registry=self.registry,
        )
        self.alarms = Counter(PREFIX + "alarms_raised", "Alarms raised", ("kind",), registry=self.registry)
        self.delivered_seconds = Histogram(
            PREFIX + "send_to_delivered_seconds",
            "Seconds from sealing a message to storing its delivered receipt",
            buckets=DELIVERED_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            PREFIX + "store_commit_seconds",
            "Seconds one store transaction's COMMIT took (durable: flushed to disk)",
            ("durable",),
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(lines, links, sender, store))
        store.on_commit = self.committed

    def committed(self, seconds: float, durable: bool, events: list[Committed]) -> None:
        """A transaction committed: observe its COMMIT and count what it did."""
        self.commit_seconds.labels("true" if durable else "false").observe(seconds)
        for event in events:
            line = self._lines.name(event.line_id) if event.line_id is not None else ""
            match event.what:
                case "sent":
                    self.sent.labels(line).inc()
                case "received":
                    self.received.labels(line).inc()
                case "delivered":
                    self.delivered.labels(line).inc()
                    self.delivered_seconds.observe(max(event.seconds, 0.0))
                case "alarm":
                    self.alarms.labels(event.kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges read when scraped: what is true now, not what happened."""

    def __init__(self, lines: Lines, links: Links, sender: Sender, store: Store) -> None:
        self._lines, self._links, self._sender, self._store = lines, links, sender, store

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily(
            PREFIX + "frames_queued",
            "Frames a circuit has not yet stored (queued, in flight or waiting for the relay)",
            labels=("line", "relay"),
        )
        for (line_id, url), count in sorted(self._sender.pending_by_circuit().items()):
            queued.add_metric((self._lines.name(line_id), relay_label(url)), count)
        up = GaugeMetricFamily(
            PREFIX + "circuit_up", "1 if the circuit is up or degraded, 0 if down", labels=("line", "relay")
        )
        state = GaugeMetricFamily(
            PREFIX + "circuit_state",
            "The circuit's health: 1 for its current state",
            labels=("line", "relay", "state"),
        )
        connected = GaugeMetricFamily(
            PREFIX + "relay_connected", "1 if the relay connection is up", labels=("line", "relay")
        )
        for live in sorted(self._lines.all(), key=lambda live: live.row.name):
            for circuit in sorted(live.watch.circuits if live.watch else (), key=lambda c: c.url):
                key = (live.row.name, relay_label(circuit.url))
                up.add_metric(key, 0 if circuit.state is Health.DOWN else 1)
                for health in Health:
                    state.add_metric((*key, health.value), 1 if circuit.state is health else 0)
                connected.add_metric(key, 1 if self._links.connected(circuit.url) else 0)
        open_alarms = GaugeMetricFamily(PREFIX + "alarms_open", "Alarms open now", labels=("kind",))
        counts: dict[str, int] = {}
        for alarm in self._store.alarms():
            counts[alarm.kind] = counts.get(alarm.kind, 0) + 1
        for kind, count in sorted(counts.items()):
            open_alarms.add_metric((kind,), count)
        yield from (queued, up, state, connected, open_alarms)


class MetricsService:
    """``[station.metrics] listen``: ``GET /metrics`` (bearer token if set), nothing else."""

    def __init__(self, config: StationConfig) -> None:
        self._listen = config.metrics_listen
        self._token = config.metrics_token
        self._server: Server | None = None
        self.metrics: StationMetrics | None = None
        self.url = ""

    async def start(self, station: Station) -> None:
        self.metrics = StationMetrics(station.mirror, station.links, station.sender, station.store)
        host, port = listen_address(self._listen, "metrics listen")
        try:
            self._server = await serve(metrics_http.never_upgraded, host, port, process_request=self._request)
        except OSError as exc:
            raise TransportError(f"cannot serve metrics on {self._listen}: {exc.strerror or exc}") from exc
        bound = self._server.sockets[0].getsockname()[1] if self._server.sockets else port
        self.url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
        log.info("station metrics on %s/metrics", self.url)

    def announcement(self) -> str:
        return f"metrics at {self.url}/metrics"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _request(self, connection: ServerConnection, request: Request) -> Response:
        if request.path.split("?", 1)[0] != "/metrics":
            return connection.respond(HTTPStatus.NOT_FOUND, "only /metrics here\n")
        refusal = metrics_http.refused(connection, request, self._token)
        if refusal is not None:
            return refusal
        assert self.metrics is not None  # (the server starts after the metrics)
        return metrics_http.exposition(connection, self.metrics.exposition())
