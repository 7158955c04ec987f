"""Injected time and randomness.

The pure core never reads the clock or the OS entropy pool itself: it is handed a ``Clock``
and an ``Rng``. Real processes pass ``SystemClock``/``SystemRng``; tests pass the fakes, so
every ciphertext of the outer layer and every decision is reproducible byte for byte.
(vodozemac draws its own randomness inside Olm; that part is not reproducible, and the
test vectors say so.)
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Protocol


def ms(seconds: float) -> int:
    """Seconds (as the clocks give them) to the whole milliseconds the wire formats carry."""
    return int(seconds * 1000)


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (wall clock, for timestamps shown to people)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin (for timeouts and backoff)."""
        ...


class Rng(Protocol):
    def bytes(self, n: int) -> bytes:
        """``n`` bytes fit for keys and nonces."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class SystemRng:
    def bytes(self, n: int) -> bytes:
        return os.urandom(n)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


class FakeRng:
    """Deterministic bytes from a seed (SHA-256 in counter mode): NOT for real keys."""

    def __init__(self, seed: bytes = b"backchannel-test") -> None:
        self._seed = seed
        self._counter = 0

    def bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return out[:n]
