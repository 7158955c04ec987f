"""The relay's HTTP side door: ``/health`` and ``/metrics`` answered without a WebSocket.

``/metrics`` is served on the relay's own port, or, when ``metrics_listen`` is set, only on
that separate address (which serves no WebSocket at all); with ``metrics_token`` set it needs
``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from backchannel import metrics_http
from backchannel.metrics_http import never_upgraded
from backchannel.relay.config import RelayConfig

__all__ = ["SideDoor", "never_upgraded"]


class SideDoor:
    def __init__(self, config: RelayConfig, exposition: Callable[[], Awaitable[bytes]]) -> None:
        self.config = config
        self._exposition = exposition

    async def relay_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer ``GET /health`` and ``GET /metrics`` without a WebSocket handshake (``/metrics``
        only when it is not served on its own address)."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            if self.config.metrics_listen:
                return connection.respond(HTTPStatus.NOT_FOUND, "/metrics is served on another address\n")
            return await self._metrics(connection, request)
        return None

    async def metrics_request(self, connection: ServerConnection, request: Request) -> Response:
        """The metrics address: ``/metrics`` and ``/health``, and no WebSocket at all."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return await self._metrics(connection, request)
        return connection.respond(HTTPStatus.NOT_FOUND, "only /metrics and /health here\n")

    async def _metrics(self, connection: ServerConnection, request: Request) -> Response:
        refusal = metrics_http.refused(connection, request, self.config.metrics_token)
        if refusal is not None:
            return refusal
        return metrics_http.exposition(connection, await self._exposition())
