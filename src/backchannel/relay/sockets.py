"""The relay's TCP sockets as the limits see them: counted from accept, cut when overfed.

Theory of operation
-------------------
The WebSocket library calls the relay's handler only once a handshake has finished, so limits
counted there miss every socket that never finishes one: a stranger could hold thousands of
them (each a file descriptor) for ``handshake_timeout_seconds``, again and again. So the relay
gives ``serve`` a :class:`ServerConnection` subclass (:func:`counted_connection`) that reports
each socket to a :class:`SocketWatch` the moment it is accepted and again when it is gone; the
watch counts it against the per-address and relay-wide limits and may refuse it, and a refused
socket is closed there and then, before it costs a handshake.

The same subclass bounds what a client can make the relay write without reading: the
WebSocket layer answers each PING with a PONG by itself, outside the relay's bounded send
buffer, so a client sending PINGs and reading nothing grew the relay's write buffer without
end. After each read the unsent bytes are checked; past ``write_bound`` the connection is
reset and reported as overfed.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from websockets.asyncio.server import ServerConnection


class SocketWatch(Protocol):
    def accepted(self, conn: ServerConnection) -> bool:
        """Count a new socket; False refuses it (it is closed at once, never handshaken)."""
        ...

    def gone(self, conn: ServerConnection) -> None:
        """The socket accepted earlier is closed: give back what it counted against."""
        ...

    def overfed(self, conn: ServerConnection) -> None:
        """The socket was reset for leaving more than ``write_bound`` bytes unread."""
        ...


def counted_connection(watch: SocketWatch, write_bound: int) -> type[ServerConnection]:
    """A ``ServerConnection`` class for ``serve(create_connection=...)`` that reports to ``watch``."""

    class CountedConnection(ServerConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if not watch.accepted(self):
                self.transport.abort()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            watch.gone(self)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport.get_write_buffer_size() > write_bound and not self.transport.is_closing():
                watch.overfed(self)
                self.transport.abort()

    return CountedConnection
