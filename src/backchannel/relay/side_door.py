"""The relay's HTTP side door: ``/health`` and ``/metrics`` answered without a WebSocket.

``/metrics`` is served on the relay's own port, or, when ``metrics_listen`` is set, only on
that separate address (which serves no WebSocket at all); with ``metrics_token`` set it needs
``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from backchannel.relay.config import RelayConfig


class SideDoor:
    def __init__(self, config: RelayConfig, metrics_text: Callable[[], str]) -> None:
        self.config = config
        self._metrics_text = metrics_text

    def relay_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer ``GET /health`` and ``GET /metrics`` without a WebSocket handshake (``/metrics``
        only when it is not served on its own address)."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            if self.config.metrics_listen:
                return connection.respond(HTTPStatus.NOT_FOUND, "/metrics is served on another address\n")
            return self._metrics(connection, request)
        return None

    def metrics_request(self, connection: ServerConnection, request: Request) -> Response:
        """The metrics address: ``/metrics`` and ``/health``, and no WebSocket at all."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return self._metrics(connection, request)
        return connection.respond(HTTPStatus.NOT_FOUND, "only /metrics and /health here\n")

    def _metrics(self, connection: ServerConnection, request: Request) -> Response:
        token = self.config.metrics_token
        if token:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "/metrics needs its bearer token\n")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return connection.respond(HTTPStatus.OK, self._metrics_text())


async def never_upgraded(ws: ServerConnection) -> None:
    """The metrics address answers every request in ``process_request``; nothing upgrades."""
    await ws.close()
