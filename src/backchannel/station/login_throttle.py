"""Failed console logins, slowed down per (operator name, where the attempt comes from).

Theory of operation
-------------------
A lockout of the *account* lets anyone who can reach the login page lock out every admin by
failing logins for their names. So failures are counted per *key*: the name as typed and
where the attempt comes from, which is the client's address, or, for a browser that has
logged in as that very name before, its device cookie (OWASP's "device cookies"). An attacker
on another address, or on the same host without the operator's browser, slows down only their
own attempts.

The first ``free`` failures of a key cost nothing; from then on each failure makes the key
wait ``1, 2, 4, ...`` seconds (doubling, at most ``ceiling``) before its next attempt is even
checked. A success clears the key. Unknown names are counted exactly like known ones, so the
throttle does not tell which names exist.

The table is bounded: when full, the key with the fewest failures (then the oldest) is
forgotten, so spraying many names from one address cannot evict the key that is guessing a
real one. Keys idle for a day are forgotten too.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How many keys are remembered at most (a few hundred bytes each).
CAPACITY = 10_000
#: A key with no failure for this long starts afresh.
FORGET_SECONDS = 86_400.0


@dataclass
class _Failures:
    count: int
    last: float
    until: float  # no attempt of this key is checked before this time


class LoginThrottle:
    def __init__(self, free: int, ceiling: float, capacity: int = CAPACITY) -> None:
        self.free = free
        self.ceiling = ceiling
        self.capacity = capacity
        self._keys: dict[tuple[str, str], _Failures] = {}

    def wait(self, key: tuple[str, str], now: float) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        entry = self._keys.get(key)
        if entry is None:
            return 0.0
        if now - entry.last > FORGET_SECONDS:
            del self._keys[key]
            return 0.0
        return max(0.0, entry.until - now)

    def failed(self, key: tuple[str, str], now: float) -> float:
        """Count a failure of ``key``; returns how long it must now wait."""
        entry = self._keys.get(key)
        if entry is None or now - entry.last > FORGET_SECONDS:
            if entry is None and len(self._keys) >= self.capacity:
                self._evict()
            entry = self._keys[key] = _Failures(0, now, now)
        entry.count += 1
        entry.last = now
        over = entry.count - self.free
        delay = 0.0 if over < 0 else min(self.ceiling, 2.0 ** min(over, 62))
        entry.until = now + delay
        return delay

    def succeeded(self, key: tuple[str, str]) -> None:
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)

    def _evict(self) -> None:
        victim = min(self._keys, key=lambda k: (self._keys[k].count, self._keys[k].last))
        del self._keys[victim]
