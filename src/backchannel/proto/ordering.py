"""Receive-side ordering: deduplicate by sequence number, hold early frames, release in order.

Olm cannot be fed out of order, and frames can arrive twice (retries, several circuits) or
early (a reconnect, a relay that reorders). This pure function decides what to do with one
authenticated frame; the station carries the decision out inside its store transaction.
"""

from __future__ import annotations

from collections.abc import Container
from enum import Enum

#: How far ahead of the next expected sequence number a frame may be held.
MAX_AHEAD = 100_000


class Verdict(Enum):
    DELIVER = "deliver"  # next in order: decrypt now
    HOLD = "hold"  # early: store and wait for the gap to fill
    DUPLICATE = "duplicate"  # already delivered or already held: drop
    TOO_FAR = "too_far"  # implausibly far ahead: drop and count


def classify(seq: int, delivered_upto: int, held: Container[int]) -> Verdict:
    if seq <= delivered_upto or seq in held:
        return Verdict.DUPLICATE
    if seq == delivered_upto + 1:
        return Verdict.DELIVER
    if seq - delivered_upto > MAX_AHEAD:
        return Verdict.TOO_FAR
    return Verdict.HOLD
