"""The line's core: its protocol state and lifecycle, immutable, with the lifecycle's table.

A line is *pairing* from the accepter's hello until the inviter's welcome arrives (until
then only the hello may leave: the inviter cannot read anything else yet), and *established*
from then on; the inviter's line is established the moment it opens the hello. An accepter
whose welcome does not come within the pairing timeout marks the line *failed* (the
invitation was used by another station, or the inviter is gone); a welcome arriving later
still establishes it, since a slow inviter's genuine welcome must not be lost. The
transitions are data (:data:`TRANSITIONS`), as in h11: one place says what may follow what.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from backchannel.proto.engine.linkcheck import LineWatch
from backchannel.proto.engine.recovery import PeerReport
from backchannel.proto.line import LineState


class Lifecycle(Enum):
    PAIRING = "pairing"
    ESTABLISHED = "established"
    FAILED = "failed"


class Event(Enum):
    HELLO_OPENED = "hello_opened"  # the inviter opened the accepter's hello
    WELCOMED = "welcomed"  # the accepter received the inviter's welcome
    TIMED_OUT = "timed_out"  # the accepter waited the pairing timeout for the welcome in vain


#: (state, event) -> next state. A pair absent from the table leaves the state unchanged
#: (a second welcome, a welcome to the inviter): the event is harmless and ignored.
TRANSITIONS: dict[tuple[Lifecycle | None, Event], Lifecycle] = {
    (None, Event.HELLO_OPENED): Lifecycle.ESTABLISHED,
    (Lifecycle.PAIRING, Event.WELCOMED): Lifecycle.ESTABLISHED,
    (Lifecycle.PAIRING, Event.TIMED_OUT): Lifecycle.FAILED,
    (Lifecycle.FAILED, Event.WELCOMED): Lifecycle.ESTABLISHED,
}


def transition(state: Lifecycle | None, event: Event) -> Lifecycle | None:
    return TRANSITIONS.get((state, event), state)


@dataclass(frozen=True)
class LineCore:
    """Everything the engine decides on for one line (the Olm session travels beside it).

    ``state`` and ``lifecycle`` are durable (the line's row); ``peer``, what the peer reported
    of our direction (end-to-end recovery, :mod:`.recovery`), is kept in memory and starts
    from the record after a restart; ``watch``, the link tests and circuit health
    (:mod:`.linkcheck`), is kept in memory and starts afresh after a restart.
    """

    state: LineState
    lifecycle: Lifecycle
    peer: PeerReport = field(default_factory=PeerReport)
    watch: LineWatch = field(default_factory=LineWatch)

    @property
    def line_id(self) -> bytes:
        return self.state.line_id

    @property
    def established(self) -> bool:
        return self.lifecycle is Lifecycle.ESTABLISHED

    def with_state(self, state: LineState) -> LineCore:
        return replace(self, state=state)

    def with_peer(self, peer: PeerReport) -> LineCore:
        return replace(self, peer=peer)

    def with_watch(self, watch: LineWatch) -> LineCore:
        return replace(self, watch=watch)

    def may_send(self, seq: int) -> bool:
        """Whether our frame ``seq`` may leave now: an accepter sends only its hello until welcomed."""
        return self.established or seq == 1
