"""``/metrics`` over HTTP for the relay and the station: the bearer token and the response.

Both serve prometheus_client's exposition from a ``websockets`` server's ``process_request``
(the relay on its side door, the station on a listener of its own). What they share is how a
scrape is let in (``Authorization: Bearer TOKEN``, compared in constant time, 401 otherwise)
and how the exposition goes out (prometheus_client's content type, exact length).
"""

from __future__ import annotations

import hmac
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response


def refused(connection: ServerConnection, request: Request, token: str) -> Response | None:
    """A 401 unless ``request`` carries ``token`` as its bearer token (None: let it in)."""
    if not token:
        return None
    given = request.headers.get("Authorization", "")
    if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return None
    response = connection.respond(HTTPStatus.UNAUTHORIZED, "/metrics needs its bearer token\n")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def exposition(connection: ServerConnection, body: bytes) -> Response:
    """200 with ``body`` in the Prometheus text format."""
    response = connection.respond(HTTPStatus.OK, "")
    headers = response.headers  # (a multidict: replace, do not add a second value)
    del headers["Content-Type"], headers["Content-Length"]
    headers["Content-Type"] = CONTENT_TYPE_LATEST
    headers["Content-Length"] = str(len(body))
    return Response(response.status_code, response.reason_phrase, headers, body)


async def never_upgraded(ws: ServerConnection) -> None:
    """A metrics listener answers every request in ``process_request``; nothing upgrades."""
    await ws.close()
