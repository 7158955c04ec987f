"""End-to-end recovery: send again the frames the peer still lacks after a relay stored them.

Why this exists
---------------
Relays are untrusted and fallible. A relay whose disk is replaced, one that expires a frame
because a station was away longer than its ``expiry_seconds``, or a hostile one that answers
*stored* and then discards the frame, would otherwise leave a hole that no retry fills: the
sender's retries stop once a relay has said *stored*. The receiving station only notices a
gap when a later frame arrives, and never notices a lost last frame.

The sender can see the hole itself. Every entry the peer seals carries ``seen``: how many of
our frames it had received, in order, when it sealed it (PROTOCOL §7). Ordinary traffic and
the hourly link tests therefore tell us, without any new message, which of our frames never
arrived. A frame that a relay stored more than ``resend_after`` seconds before the peer
still reported lacking it is sent again: the very same bytes, on every circuit. The relays
store it again if they had lost it (a copy still waiting is stored once), and the peer keeps
the first copy by sequence number, so a resend can never duplicate a message; at worst it
costs one dropped copy.

A receiving station with a gap (later frames held, an earlier one missing) sends a link test
early, at most once per ``resend_after``, so that its report reaches the sender without
waiting for the next scheduled test.

What this does not recover: the pairing frames (hello and welcome) travel before the line
has any report to give; a pairing whose hello or welcome every relay lost is redone with a
new invitation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: At most this many frames are sent again per line per round (the rest follow next round).
RESEND_LIMIT = 256


@dataclass
class PeerReport:
    """What the peer last told us, in its entries' ``seen``, about our direction."""

    #: How many of our frames (sequence numbers 1..has) the peer had received, in order.
    has: int = 0
    #: When the latest report that did not move ``has`` backwards arrived (our clock).
    reported_at: float | None = None
    #: When we last sent frames again on this line (one round per ``resend_after``).
    resent_at: float | None = None

    def report(self, count: int, now: float) -> None:
        """Note one entry's ``seen`` count; a late, older report never moves ``has`` back."""
        if count >= self.has:
            self.has = count
            self.reported_at = now


def frames_to_resend(
    report: PeerReport, relayed: Sequence[tuple[int, float | None]], now: float, resend_after: float
) -> list[int]:
    """The frames to send again now, given ``relayed``: (seq, when a relay first stored it).

    ``relayed`` holds our frames after ``report.has``, in order. A frame qualifies when a
    relay stored it and the peer, more than ``resend_after`` seconds later, still reported
    not having it; frames never stored are the ordinary retry's business, not ours.
    """
    if report.reported_at is None:
        return []
    if report.resent_at is not None and now - report.resent_at < resend_after:
        return []
    due = [
        seq
        for seq, stored_at in relayed
        if seq > report.has and stored_at is not None and report.reported_at - stored_at > resend_after
    ]
    return due[:RESEND_LIMIT]


def gap_test_due(
    gap_since: float | None, last_test_at: float | None, now: float, resend_after: float
) -> bool:
    """Whether a receiving station with a gap should send a link test now, to report it."""
    if gap_since is None or now - gap_since < resend_after:
        return False
    return last_test_at is None or now - last_test_at >= resend_after
