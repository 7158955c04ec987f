"""The circuit side of receiving: open each 4 096-byte frame, reassemble envelopes, defer ACKs.

Theory of operation
-------------------
A relay delivers opaque circuit frames (PROTOCOL §7.1). Nothing in a frame names its line: the
mailbox it came from does (:meth:`Links.mailbox`, current and retired mailboxes, and those of
our pending invitations, which carry the invitation's line id). The frame is opened with the
circuit keys of our receiving direction on that relay (:class:`CircuitKeyring`); on a mailbox of
an invitation of ours it may instead be the accepter's hello, under the hello keys. A frame that
does not open is counted ``unreadable_frame``, acknowledged (so garbage does not clog the
mailbox) and *useless* to the flood guard.

A *cover* frame carries nothing but proves the circuit works: it is counted
(``cover_received``), noted as contact in through that circuit, and acknowledged with its batch.
A *fragment* goes into the reassembly (:mod:`backchannel.proto.reassembly`, bounded): when the
entry is whole, its envelope is checked against the mailbox's line, our receiving direction and
the fragments' sequence number and goes down the receive path as before. The fragments of an
incomplete entry are **not acknowledged**: every copy that went into the entry is acknowledged,
to the relay it came from, once the batch that delivered or held the entry has committed. A
crash before that loses nothing: the relays push the copies again. Fragments of an entry already
delivered or held are duplicates, acknowledged with their batch; so are fragments refused by
the reassembly's bounds (counted ``fragment_limit``; the entry comes back end to end, §10.6).

Opening is pure CPU and needs no transaction, so the receiver does it for a whole batch first
(:meth:`Inbound.open`): it then knows, before it starts the transaction, whether the batch holds
anything larger than a receipt (whether the commit must be flushed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from backchannel.errors import DecryptError, MisaddressedFrame, ProtocolError, RemoteError
from backchannel.proto import envelope, wire
from backchannel.proto.envelope import Kind, Sealed
from backchannel.proto.line import INVITER
from backchannel.proto.reassembly import Assembled, Duplicate, Partial, Reassembly, Refused
from backchannel.proto.wire import Cover, Fragment
from backchannel.station.circuit_keys import HELLO_SEQ, CircuitKeyring
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.relay_link import Delivery

log = logging.getLogger("backchannel.station")

#: The reassembly key of hello fragments: apart from the line's own entries, so that a second
#: hello (another accepter of a leaked invitation) still reaches the rule that raises the alarm.
HELLO_SPACE = b"hello:"


@dataclass(frozen=True)
class Opened:
    """One delivery after the circuit layer: the frame it carried, or why it did not open."""

    delivery: Delivery
    line_id: bytes | None = None
    url: str | None = None  # the mailbox's relay: the circuit whose keys opened it
    frame: Fragment | Cover | None = None
    hello: bool = False  # opened with the hello keys
    error: RemoteError | None = None
    unreadable: bool = False  # the error is the frame's own (did not open), not its mailbox's

    @property
    def small(self) -> bool:
        """Whether this frame alone cannot make the batch store a message (see the receiver)."""
        frame = self.frame
        if isinstance(frame, Fragment):
            return frame.count == 1 and len(frame.chunk) <= SMALL_ENVELOPE
        return True


#: The size of an envelope in the smallest padding bucket (every receipt's).
SMALL_ENVELOPE = envelope.HEADER_LEN + envelope.BUCKETS[0] + 16


@dataclass
class Taken:
    """What one batch did to the reassembly: ACKs owed after its commit, what to undo if not."""

    acks: list[Delivery] = field(default_factory=list)
    #: (reassembly key, line, seq, hello, the tokens of its fragments)
    assembled: list[tuple[bytes, bytes, int, bool, tuple[Delivery, ...]]] = field(default_factory=list)
    lines: set[bytes] = field(default_factory=set)


#: Told of an authenticated fragment through a circuit: (line, url, seq) (the monitor's
#: ``copy_arrived``: a genuine copy proves its circuit works).
CopyArrived = Callable[[bytes, "str | None", int], None]


class Inbound:
    def __init__(self, lines: Lines, links: Links, keys: CircuitKeyring, copy_arrived: CopyArrived) -> None:
        self._lines = lines
        self._links = links
        self._keys = keys
        self._copy_arrived = copy_arrived
        self.reassembly: Reassembly[Delivery] = Reassembly()
        self._floored: set[bytes] = set()

    # ---- before the transaction --------------------------------------------------------------

    def open(self, delivery: Delivery) -> Opened:
        """Find the delivery's line and circuit by its mailbox and open the frame."""
        mailbox = self._links.mailbox(delivery.recv_id)
        if mailbox is None:
            return Opened(delivery, error=MisaddressedFrame("a frame came in a mailbox this station lacks"))
        line_id, url = mailbox
        try:
            frame, hello = self._open(line_id, url, delivery.payload)
        except (DecryptError, ProtocolError) as exc:
            return Opened(delivery, line_id, url, error=exc, unreadable=True)
        except RemoteError as exc:
            return Opened(delivery, line_id, url, error=exc)
        return Opened(delivery, line_id, url, frame, hello)

    def _open(self, line_id: bytes, url: str, payload: bytes) -> tuple[Fragment | Cover, bool]:
        live = self._lines.get(line_id)
        if live is None:
            hello = self._keys.hello(line_id, url)  # our invitation, not yet accepted
            if hello is None:
                raise MisaddressedFrame("a frame arrived for a line this station does not have")
            return wire.open_frame(hello, payload), True
        try:
            return wire.open_frame(self._keys.receiving(line_id, url), payload), False
        except DecryptError:
            # On the mailboxes of our invitation, a late copy of the hello, or a second
            # accepter's: it must still reach the rule that tells them apart (§5).
            hello = self._keys.hello(line_id, url) if live.state.role == INVITER else None
            if hello is None:
                raise
            return wire.open_frame(hello, payload), True

    # ---- inside the transaction --------------------------------------------------------------

    def take(
        self, opened: Opened, fragment: Fragment, url: str | None, now: float, taken: Taken
    ) -> tuple[Sealed, bytes] | None:
        """Put a fragment into the reassembly. Returns the whole entry's (checked) envelope
        when this fragment completes it; otherwise notes what to acknowledge when."""
        assert opened.line_id is not None
        line_id, delivery = opened.line_id, opened.delivery
        if opened.hello and fragment.seq != HELLO_SEQ:
            taken.acks.append(delivery)
            raise ProtocolError("a frame under the hello keys that is not the hello")
        key = HELLO_SPACE + line_id if opened.hello else line_id
        live = self._lines.get(line_id)
        if live is not None and not opened.hello:
            taken.lines.add(line_id)
            if line_id not in self._floored:  # the window starts at what is delivered
                self._floored.add(line_id)
                taken.acks += self.reassembly.drop_below(line_id, live.state.delivered_upto)
        flood = self._links.flood
        repeat = url is not None and flood.copy(url, key, fragment.seq, now, fragment.index)
        result = self.reassembly.add(key, fragment, delivery)
        match result:
            case Partial():
                self._copy_arrived(line_id, url, fragment.seq)
                return None
            case Duplicate(tokens):
                taken.acks += tokens
                self._lines.store.count("duplicate")
                self._copy_arrived(line_id, url, fragment.seq)
                if repeat and url is not None:
                    flood.useless(url, now)  # the same relay pushed this very fragment again
                return None
            case Refused(reason, tokens):
                taken.acks += tokens
                self._lines.store.count("fragment_limit")
                log.info("refused a fragment of entry %d: %s", fragment.seq, reason)
                return None
            case Assembled(_, seq, data, tokens):
                taken.acks += tokens
                taken.assembled.append((key, line_id, seq, opened.hello, tokens))
                if opened.hello:  # every copy of a hello meets the pairing rules (§5)
                    self.reassembly.reopen(key, seq)
                direction = 1 if opened.hello else self._in_direction(line_id)
                try:
                    sealed = wire.check_envelope(data, line_id, direction, seq)
                    if opened.hello and sealed.header.kind is not Kind.HELLO:
                        raise ProtocolError("a frame under the hello keys that is not the hello")
                except RemoteError:
                    self.reassembly.reopen(key, seq)
                    raise
                return sealed, data
        raise AssertionError(f"unknown reassembly result {result!r}")

    def _in_direction(self, line_id: bytes) -> int:
        return self._lines[line_id].state.in_direction

    # ---- after the transaction ---------------------------------------------------------------

    def committed(self, taken: Taken) -> list[Delivery]:
        """The batch committed: what to acknowledge now (its own and the entries' earlier
        fragments, and the held fragments of entries the batch made duplicates)."""
        acks = list(taken.acks)
        for line_id in taken.lines:
            live = self._lines.get(line_id)
            if live is not None:
                acks += self.reassembly.drop_below(line_id, live.state.delivered_upto)
        for key, line_id, seq, hello, _ in taken.assembled:
            # An entry assembled but neither delivered nor held (over the held limit, too far
            # ahead) must assemble again when it comes again, end to end.
            live = self._lines.get(line_id)
            kept = live is not None and (
                seq <= live.state.delivered_upto or self._lines.store.is_held(line_id, seq)
            )
            if not hello and not kept:
                self.reassembly.reopen(key, seq)
        return acks

    def rejected(self, taken: Taken, delivery: Delivery) -> None:
        """The entry ``delivery`` completed was refused (a ``RemoteError`` past the circuit
        layer): a later copy must meet the rules again, even in this batch."""
        if taken.assembled and any(t is delivery for t in taken.assembled[-1][4]):
            key, _, seq, _, _ = taken.assembled[-1]
            self.reassembly.reopen(key, seq)

    def rolled_back(self, taken: Taken, batch: list[Delivery]) -> list[Delivery]:
        """The batch did not commit: the entries it assembled must assemble again. Returns the
        earlier fragments of those entries (not in ``batch``), to be put back in the queue."""
        again: list[Delivery] = []
        for key, _, seq, _, tokens in taken.assembled:
            self.reassembly.reopen(key, seq)
            again += [t for t in tokens if not any(t is d for d in batch)]
        return again
