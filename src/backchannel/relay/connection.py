"""Per-connection state of the relay: what it proved, and its ordered outbox.

Theory of operation
-------------------
Replies are produced in three places: the reader (immediate answers), the group committer
(STORED/OK after a commit) and the push pump (DELIVER). All of them append to one outbox
per connection, and one flusher task writes the outbox to the socket in order. So no
producer ever blocks on a slow client, and the order "OK to SUBSCRIBE, then DELIVERs" holds.

Back-pressure: each request takes a slot (``MAX_IN_FLIGHT`` per connection) that is given
back only when its reply has been written. A client that floods requests without reading
replies stops being read from, and TCP pushes back on it; DELIVERs are bounded by the push
window. Memory per connection is therefore bounded.
"""

from __future__ import annotations

import asyncio
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from backchannel.proto import frames

#: Requests a single connection may have unanswered at once.
MAX_IN_FLIGHT = 2048


class RelayConnection:
    """One client connection: its session nonce, its proven capabilities, its outbox."""

    def __init__(self, ws: ServerConnection, nonce: bytes) -> None:
        self.ws = ws
        self.nonce = nonce
        #: send_id -> recv_id for every AUTH_SEND that verified on this connection.
        self.senders: dict[bytes, bytes] = {}
        #: recv_ids whose receive key was proven (by SUBSCRIBE) on this connection.
        self.receivers: set[bytes] = set()
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._out: deque[tuple[bytes, bool]] = deque()
        self._ready = asyncio.Event()

    @property
    def backlogged(self) -> bool:
        """True while frames wait to be written (in the outbox or the socket's buffer)."""
        if self._out:
            return True
        transport = self.ws.transport
        return transport is not None and transport.get_write_buffer_size() > 0

    def reply(self, frame: frames.Frame) -> None:
        """Queue the one answer to a request (gives its slot back once written)."""
        self._out.append((frames.encode(frame), True))
        self._ready.set()

    def push(self, frame: frames.Frame) -> None:
        """Queue a frame the relay sends on its own (Welcome, Deliver)."""
        self._out.append((frames.encode(frame), False))
        self._ready.set()

    async def flush_forever(self) -> None:
        """Write the outbox in order until the connection closes."""
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._out:
                    data, answers_request = self._out.popleft()
                    await self.ws.send(data)
                    if answers_request:
                        self.slots.release()
        except ConnectionClosed:
            return
