"""The wire seam: the one place every circuit frame of ours leaves for a relay.

Theory of operation
-------------------
The sender (:mod:`backchannel.station.delivery`) wraps each stored envelope into 4 096-byte
circuit frames, one set per circuit, and hands every frame to :meth:`WireSend.send_frame`, which
returns once the relay answered *stored* (or raises as :meth:`RelayLink.send` does). Nothing else
sends a frame of a line. Keeping that one narrow door is what lets the cover-traffic pacer sit
there later: it only has to implement the same method (queue the frame for the circuit's next
slot, return when that slot's SEND is stored), and the sender, the retries and the bookkeeping
stay as they are.

Without a pacer the frame goes at once: :class:`DirectSend`.
"""

from __future__ import annotations

from typing import Protocol

from backchannel.station.links import Links


class WireSend(Protocol):
    """Sends one circuit frame of a line to the peer's mailbox ``send_id`` on ``url``."""

    async def send_frame(
        self, line_id: bytes, url: str, send_id: bytes, frame: bytes, precedence: str | None
    ) -> None:
        """Return once the relay stored ``frame``; raise like :meth:`RelayLink.send` otherwise.

        ``precedence`` is the message's (FLASH, IMMEDIATE, PRIORITY, ROUTINE), None for a
        control entry (receipt, link test, ...): a pacer may let a FLASH jump its queue."""
        ...


class DirectSend:
    """No pacing: each frame is SENT as soon as the sender has it."""

    def __init__(self, links: Links) -> None:
        self._links = links

    async def send_frame(
        self, line_id: bytes, url: str, send_id: bytes, frame: bytes, precedence: str | None
    ) -> None:
        await self._links.link(url).send(send_id, frame)
