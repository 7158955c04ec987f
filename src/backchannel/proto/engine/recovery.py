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

When frames are lost in *both* directions, each side's reports sit behind its own gap at the
other side (an entry is read only in order), so no report would ever come. A station whose own
gap has stayed open therefore also sends again, without a report, what the peer had not
confirmed; and it sends a link test early so that its report reaches the peer. Both happen at
gap ages R, 2R, 4R, ... (R = ``resend_after``): quick for a loss that one round repairs, and a
bounded trickle, never a storm, for a gap that nothing fills.

What this does not recover: the pairing frames (hello and welcome) travel before the line
has any report to give; a pairing whose hello or welcome every relay lost is redone with a
new invitation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

#: At most this many frames are sent again per line per round (the rest follow next round).
RESEND_LIMIT = 256
#: A report proves a loss only if it arrived this long after the round that sent the frame
#: again: longer than any copy takes to reach the peer and its report to come back.
PROOF_MARGIN = 0.5


@dataclass(frozen=True)
class PeerReport:
    """What the peer last told us, in its entries' ``seen``, about our direction.

    Part of the line's core (:class:`~backchannel.proto.engine.core.LineCore`): immutable, each
    report or round gives a new value. In memory only: after a restart ``has`` starts from the
    record (the ``seen`` of the peer's latest entry there).
    """

    #: How many of our frames (sequence numbers 1..has) the peer had received, in order.
    has: int = 0
    #: When the latest first-hand report arrived (our clock); None before any.
    reported_at: float | None = None
    #: When we last sent frames again on this line.
    resent_at: float | None = None
    #: The highest sequence number sent again so far (the loss is over once ``has`` reaches it).
    resent_upto: int = 0
    #: The highest sequence number the last round sent again.
    round_upto: int = 0

    def report(self, count: int, now: float, first_hand: bool = True) -> PeerReport:
        """Note one entry's ``seen`` count; a late, older report never moves ``has`` back.

        An entry released from the hold after a gap was filled is not first-hand: it may have
        been sealed long ago, so it may raise ``has`` but does not date a report.
        """
        if count < self.has:
            return self
        return replace(self, has=count, reported_at=now if first_hand else self.reported_at)

    def resend(
        self,
        relayed: Sequence[tuple[int, float | None]],
        now: float,
        resend_after: float,
        gap_since: float | None = None,
    ) -> tuple[PeerReport, list[int]]:
        """The report after this round, and the frames to send again now, given ``relayed``:
        (seq, when a relay first stored it).

        ``relayed`` holds our frames after ``has``, in order; ``gap_since`` is when our own
        inbound gap opened (None without one). A frame qualifies when a relay stored it more
        than ``resend_after`` seconds before the evidence that the peer lacks it: a report that
        arrived after our last round, or else our own gap, aged as described above. Frames no
        relay stored are the ordinary retry's business. Returning frames starts a round.
        """
        last = self.resent_at
        if last is not None and now - last < resend_after:
            return self, []

        def stored_before(evidence: float) -> list[int]:
            return [
                seq
                for seq, stored_at in relayed
                if seq > self.has and stored_at is not None and evidence - stored_at > resend_after
            ][:RESEND_LIMIT]

        due: list[int] = []
        if self.reported_at is not None and (last is None or self.reported_at > last):
            due = stored_before(self.reported_at)
        if not due and gap_due(gap_since, last, now, resend_after):
            due = stored_before(now)  # (the report may be stale: it is held behind our gap)
        if not due:
            return self, []
        return replace(
            self, resent_at=now, round_upto=due[-1], resent_upto=max(self.resent_upto, due[-1])
        ), due

    def loss_proved(self) -> bool:
        """Whether the peer has proved that a relay loses what it stored: a first-hand report
        that arrived well after our last round (``PROOF_MARGIN``) still lacks a frame that round
        sent again. One stale report proves nothing (the peer may have sealed it while cut off
        from every relay), and a round driven by our own gap proves nothing either."""
        return (
            self.resent_at is not None
            and self.reported_at is not None
            and self.reported_at - self.resent_at > PROOF_MARGIN
            and self.has < self.round_upto
        )

    def loss_over(self) -> bool:
        """Whether everything sent again has arrived (judged from a first-hand report)."""
        return self.reported_at is not None and self.has >= self.resent_upto


def gap_due(gap_since: float | None, last: float | None, now: float, resend_after: float) -> bool:
    """Whether a station whose own gap opened at ``gap_since`` should act on it again now,
    having last done so at ``last``: at gap ages R, 2R, 4R, ... (R = ``resend_after``)."""
    if gap_since is None or now - gap_since < resend_after:
        return False
    return last is None or last < gap_since or now - last >= max(resend_after, last - gap_since)
