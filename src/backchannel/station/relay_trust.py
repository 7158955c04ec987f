"""Whether, and how, the station talks to one relay: its TLS, its pin, and any refusal.

Theory of operation
-------------------
A relay URL with a pin (``wss://host:port#pin=…``) is connected with an SSL context that
accepts only that key (``backchannel.tls``): any other certificate fails the TLS handshake
before a byte of WebSocket is sent (not the upgrade request, which may carry the relay's
access token), and becomes a :class:`RelayPinMismatch` naming the expected and the presented
pin. A URL the station must not use at all (plain ``ws://`` beyond loopback without
``allow_plain``, a malformed pin) is never connected. Either way :attr:`RelayTrust.refusal`
says why, whoever waits for the connection hears it at once instead of timing out, and
``on_refused`` (the station's alarm) is told once per new refusal. A connection that
succeeds clears it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from backchannel.errors import BackchannelError, InvalidArgument, RelayPinMismatch
from backchannel.tls import PinRefused, RelayTarget, relay_target

_LOG = logging.getLogger("backchannel.station.relay_link")


class RelayTrust:
    """One relay's TLS target and the station's current refusal of it (None: none)."""

    def __init__(
        self,
        url: str,
        shown_url: str,
        allow_plain: bool,
        on_refused: Callable[[BackchannelError], None] | None = None,
    ) -> None:
        self.shown_url = shown_url
        self.refusal: BackchannelError | None = None
        self.target: RelayTarget | None = None
        self._on_refused = on_refused
        #: Set when the link connects or is refused: wakes :meth:`until_connected`.
        self._changed = asyncio.Event()
        try:
            self.target = relay_target(url, allow_plain)
        except BackchannelError as exc:
            self.refusal = exc

    async def connect(self, **options: Any) -> ClientConnection:
        """``websockets.connect`` to the relay (``options``) with its TLS. A pin mismatch is
        recorded and reported (:meth:`mismatch`), then raised: it is an ``OSError``, so the link
        treats it as any failed connect and tries again later."""
        target = self.target
        if target is None:
            raise InvalidArgument(f"relay {self.shown_url} is not to be connected to")
        tls: dict[str, Any] = {} if target.ssl is None else {"ssl": target.ssl}
        try:
            return await connect(target.url, **options, **tls)
        except PinRefused as exc:
            self.mismatch(exc)
            raise

    def unusable(self) -> bool:
        """Whether this URL is never to be connected to; if so, the refusal is reported now."""
        if self.target is not None or self.refusal is None:
            return False
        self.refuse(self.refusal, again=True)
        return True

    def mismatch(self, exc: PinRefused) -> None:
        """The relay presented another key than its pin: refuse it, loudly."""
        relay = self.shown_url.partition("#")[0]
        self.refuse(
            RelayPinMismatch(
                f"relay {relay} presented a TLS certificate whose key does not match the pin in its "
                f"URL: expected pin {exc.expected}, got {exc.got}; refused before sending anything "
                "(an impostor, or the relay's key changed)"
            )
        )

    def refuse(self, refusal: BackchannelError, *, again: bool = False) -> None:
        """Record why this relay is not used and report it once per change (or ``again``)."""
        changed = self.refusal is None or str(self.refusal) != str(refusal)
        self.refusal = refusal
        self._changed.set()
        if not (changed or again):
            return
        _LOG.error("%s", refusal)  # (the refusal names the relay)
        if self._on_refused is not None:
            try:
                self._on_refused(refusal)
            except Exception:
                _LOG.exception("relay %s: on_refused callback failed", self.shown_url)

    def connected(self) -> None:
        """A connection got as far as the relay's WELCOME: nothing is refused any more."""
        self.refusal = None
        self._changed.set()

    async def until_connected(self, is_connected: Callable[[], bool]) -> None:
        """Wait until ``is_connected()``; raise the refusal as soon as there is one."""
        while not is_connected():
            refusal = self.refusal
            if refusal is not None:
                raise type(refusal)(str(refusal))
            self._changed.clear()
            await self._changed.wait()
