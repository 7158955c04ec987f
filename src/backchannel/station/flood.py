"""Telling a relay that floods the station from one that is merely busy.

Theory of operation
-------------------
A relay can push DELIVER frames as fast as the station reads them. Backpressure
(:class:`~backchannel.station.relay_link.ReceiveLimit`) already bounds what that costs in
memory; this guard decides when it should cost the relay its circuit.

Per relay, in windows of ``window`` seconds, the guard counts *useless* frames: frames that
failed to authenticate or could not be processed (anything a station drops as a
``RemoteError``), frames for a mailbox the station did not subscribe on that relay, and
*repeats* — a copy of a frame (line, sequence number, fragment) that already arrived through
the same relay in the window. An honest relay sends each frame once per circuit; it repeats one only
when an acknowledgement was lost or the connection was re-established, which is bounded by the
receive limit. Copies that arrive through *different* circuits are normal and never count.

A relay whose useless frames in one window reach ``limit`` is suspended: the link drops its
connection and does not reconnect for ``suspend_seconds``, doubling at each new flood up to
an hour, back to the start after a clean window. The station marks that relay's circuits down
and raises an alarm naming it (:mod:`backchannel.station.monitor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Sequence numbers remembered per relay and window to recognise repeats (bounded memory:
#: a relay that cycles through more distinct frames than this per window is not caught by
#: repeats, but each of its copies still costs it its share of the receive limit).
SEEN_LIMIT = 16384
MAX_SUSPEND = 3600.0


@dataclass
class _Window:
    start: float
    useless: int = 0
    seen: set[int] = field(default_factory=set)


@dataclass
class _Relay:
    window: _Window
    suspend: float
    #: When its latest suspension ends (a window that began after it and stayed clean forgives).
    until: float = 0.0


class FloodGuard:
    def __init__(self, limit: int, window: float, suspend_seconds: float) -> None:
        self.limit = limit
        self.window = window
        self.suspend_seconds = suspend_seconds
        self._relays: dict[str, _Relay] = {}

    def _relay(self, url: str, now: float) -> _Relay:
        relay = self._relays.get(url)
        if relay is None:
            relay = self._relays[url] = _Relay(_Window(now), self.suspend_seconds)
        elif now - relay.window.start >= self.window:
            if relay.window.useless < self.limit and relay.window.start >= relay.until:
                relay.suspend = self.suspend_seconds  # a clean window: forgive earlier floods
            relay.window = _Window(now)
        return relay

    def copy(self, url: str, line_id: bytes, seq: int, now: float, index: int = 0) -> bool:
        """An authenticated copy of fragment ``index`` of (line, seq) arrived through ``url``;
        True if it repeats one."""
        window = self._relay(url, now).window
        key = hash((line_id, seq, index))
        if key in window.seen:
            return True
        if len(window.seen) < SEEN_LIMIT:
            window.seen.add(key)
        return False

    def useless(self, url: str, now: float, count: int = 1) -> None:
        self._relay(url, now).window.useless += count

    def tripped(self, now: float) -> list[tuple[str, int, float]]:
        """Relays over the limit in this window: (url, useless frames, seconds to suspend it
        for). Each starts a new window, so a relay that floods again after its pause is caught
        as fast as the first time, and suspended twice as long."""
        out = []
        for url, relay in self._relays.items():
            if relay.window.useless >= self.limit:
                out.append((url, relay.window.useless, relay.suspend))
                relay.until = now + relay.suspend
                relay.suspend = min(MAX_SUSPEND, relay.suspend * 2)
                relay.window = _Window(now)
        return out

    def forget(self, url: str) -> None:
        self._relays.pop(url, None)
