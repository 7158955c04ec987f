"""The relay's HTTP side door: ``/health`` and ``/metrics`` answered without a WebSocket.

``/metrics`` is served on the relay's own port, or, when ``metrics_listen`` is set, only on
that separate address (which serves no WebSocket at all); with ``metrics_token`` set it needs
``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from backchannel.relay.config import RelayConfig


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
        token = self.config.metrics_token
        if token:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "/metrics needs its bearer token\n")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        body = await self._exposition()
        response = connection.respond(HTTPStatus.OK, "")
        headers = response.headers  # (a multidict: replace, do not add a second value)
        del headers["Content-Type"], headers["Content-Length"]
        headers["Content-Type"] = CONTENT_TYPE_LATEST
        headers["Content-Length"] = str(len(body))
        return Response(response.status_code, response.reason_phrase, headers, body)


async def never_upgraded(ws: ServerConnection) -> None:
    """The metrics address answers every request in ``process_request``; nothing upgrades."""
    await ws.close()
