"""The one retry schedule of the station: wait, then double the wait, up to a cap.

Used by the sender for parked frames, the alarm dispatcher for a failing sink, and a relay
link for reconnecting and re-subscribing. Jitter, where callers add it, is theirs: the pure
schedule stays reproducible in tests.
"""

from __future__ import annotations


def next_backoff(current: float, maximum: float) -> float:
    """The pause before the next retry: double the last one, never beyond ``maximum``."""
    return min(maximum, current * 2)
