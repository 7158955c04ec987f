"""Reassembly: fragments of an envelope, from any circuit, in any order, back into one envelope.

Theory of operation
-------------------
A sender splits each envelope into 1 … 9 fragments (:func:`backchannel.proto.wire.split`) and
sends every fragment on every circuit. Copies of the same ``(seq, index)`` from different circuits
are interchangeable (the envelope is split identically everywhere), so the receiver keeps one
chunk per index and collects the *tokens* of every copy: a token is opaque here (the station
passes the delivery it must acknowledge to the relay it came from). The station acknowledges a
fragment of an incomplete entry only after the batch that delivers or holds the whole entry has
committed, so a crash loses nothing: the relays push the unacknowledged copies again.

Memory is bounded whatever arrives: per line at most :data:`MAX_PARTIAL` incomplete entries, each
of at most 9 chunks of 4 055 bytes with at most :data:`MAX_COPIES` tokens per chunk, and only
sequence numbers in ``(delivered_upto, delivered_upto + WINDOW]``. What falls outside is refused
(acknowledged and counted by the station; the entry is recovered end to end, PROTOCOL §10.6).

Results of :meth:`Reassembly.add` and what the station does with each:

``Assembled(line_id, seq, envelope, tokens)``
    The entry is whole. Check it (:func:`backchannel.proto.wire.check_envelope`), receive it as an
    envelope today, and after the transaction commits ACK every token. If the transaction does
    not commit, call :meth:`Reassembly.reopen` (the relays will push the copies again).
``Partial(line_id, seq, have, count)``
    Held, waiting for more fragments. Do **not** ACK the token now: it comes back in the
    ``Assembled`` (or from :meth:`Reassembly.drop_below` / :meth:`Reassembly.forget`).
``Duplicate(tokens)``
    Nothing new: a seq at or below ``delivered_upto``, a seq already assembled, or one copy too
    many of a chunk already held. ACK the tokens at once.
``Refused(reason, tokens)``
    Beyond the bounds (``"window"``: seq too far ahead; ``"partial_limit"``: the line already has
    :data:`MAX_PARTIAL` incomplete entries) or ``"inconsistent"`` (a copy that disagrees with the
    chunks held for that seq: count or bytes; or an index not below its count). ACK the tokens
    at once and count ``fragment_limit``.

Call :meth:`Reassembly.drop_below` whenever a line's ``delivered_upto`` advances (and before the
first fragment of a line after a start: the window is measured from it; ``add`` also accepts
``delivered_upto=``). It returns the tokens of entries that became duplicates: ACK them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from backchannel.proto.wire import CHUNK, MAX_FRAGMENTS, Fragment

T = TypeVar("T")

#: Incomplete entries kept per line. 48 × 9 fragments = 432 stays below the relay's push window
#: (512 unacknowledged deliveries per mailbox), so a relay is never stalled by what we hold.
MAX_PARTIAL = 48
#: How far ahead of ``delivered_upto`` a fragment's seq may be.
WINDOW = 10_000
#: Copies of one chunk whose tokens are kept: one per circuit (a line names at most 8 relays at a
#: time, §9.2). Further copies are duplicates, acknowledged at once: a copy is still held unacknowledged.
MAX_COPIES = 8

RefusalReason = Literal["window", "partial_limit", "inconsistent"]


@dataclass(frozen=True)
class Assembled(Generic[T]):
    """The whole envelope of ``seq``, and the tokens of every fragment copy that went into it."""

    line_id: bytes
    seq: int
    envelope: bytes
    tokens: tuple[T, ...]


@dataclass(frozen=True)
class Partial:
    """Held: ``have`` of ``count`` fragments of ``seq`` are here. Do not ACK yet."""

    line_id: bytes
    seq: int
    have: int
    count: int


@dataclass(frozen=True)
class Duplicate(Generic[T]):
    """Nothing new: ACK ``tokens`` at once."""

    tokens: tuple[T, ...]


@dataclass(frozen=True)
class Refused(Generic[T]):
    """Outside the bounds or inconsistent: ACK ``tokens`` at once and count ``fragment_limit``."""

    reason: RefusalReason
    tokens: tuple[T, ...]


AddResult = Assembled[T] | Partial | Duplicate[T] | Refused[T]


@dataclass
class _Entry(Generic[T]):
    count: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    tokens: dict[int, list[T]] = field(default_factory=dict)

    def all_tokens(self) -> list[T]:
        return [token for index in sorted(self.tokens) for token in self.tokens[index]]


@dataclass
class _Line(Generic[T]):
    floor: int = 0  # delivered_upto
    partial: dict[int, _Entry[T]] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)  # assembled seqs above the floor


class Reassembly(Generic[T]):
    """Per-line reassembly state, bounded; pure (the station owns it and carries out results)."""

    def __init__(self) -> None:
        self._lines: dict[bytes, _Line[T]] = {}

    def add(
        self, line_id: bytes, fragment: Fragment, token: T, *, delivered_upto: int | None = None
    ) -> AddResult[T]:
        line = self._lines.setdefault(line_id, _Line())
        if delivered_upto is not None and delivered_upto > line.floor:
            self._raise_floor(line, delivered_upto)
        seq = fragment.seq
        if not 0 <= fragment.index < fragment.count <= MAX_FRAGMENTS:
            return Refused("inconsistent", (token,))  # open_frame never returns one; be safe anyway
        if seq <= line.floor or seq in line.done:
            return Duplicate((token,))
        if seq > line.floor + WINDOW:
            return Refused("window", (token,))
        entry = line.partial.get(seq)
        if entry is None:
            if fragment.count > 1 and len(line.partial) >= MAX_PARTIAL:
                return Refused("partial_limit", (token,))
            entry = _Entry(count=fragment.count)
        elif not _consistent(entry, fragment):
            return Refused("inconsistent", (token,))
        copies = entry.tokens.setdefault(fragment.index, [])
        if len(copies) >= MAX_COPIES:
            return Duplicate((token,))
        copies.append(token)
        entry.chunks.setdefault(fragment.index, fragment.chunk)
        if len(entry.chunks) < entry.count:
            line.partial[seq] = entry
            return Partial(line_id, seq, len(entry.chunks), entry.count)
        line.partial.pop(seq, None)
        line.done.add(seq)
        envelope = b"".join(entry.chunks[index] for index in range(entry.count))
        return Assembled(line_id, seq, envelope, tuple(entry.all_tokens()))

    def drop_below(self, line_id: bytes, delivered_upto: int) -> list[T]:
        """Raise the line's floor to ``delivered_upto``; return the tokens of held fragments of
        entries at or below it (they became duplicates: ACK them)."""
        line = self._lines.setdefault(line_id, _Line())
        if delivered_upto <= line.floor:
            return []
        return self._raise_floor(line, delivered_upto)

    def reopen(self, line_id: bytes, seq: int) -> None:
        """Forget that ``seq`` was assembled (its transaction did not commit): copies the relays
        push again will assemble it anew instead of being dropped as duplicates."""
        line = self._lines.get(line_id)
        if line is not None:
            line.done.discard(seq)

    def forget(self, line_id: bytes) -> list[T]:
        """Drop everything of a line (it was deleted); return the tokens it held."""
        line = self._lines.pop(line_id, None)
        if line is None:
            return []
        return [token for seq in sorted(line.partial) for token in line.partial[seq].all_tokens()]

    def partial_count(self, line_id: bytes) -> int:
        line = self._lines.get(line_id)
        return 0 if line is None else len(line.partial)

    def held_bytes(self) -> int:
        """Bytes of chunks held across all lines (bounded by lines × MAX_PARTIAL × 9 × 4 055)."""
        return sum(
            len(chunk)
            for line in self._lines.values()
            for entry in line.partial.values()
            for chunk in entry.chunks.values()
        )

    def held_tokens(self) -> int:
        return sum(
            len(copies)
            for line in self._lines.values()
            for entry in line.partial.values()
            for copies in entry.tokens.values()
        )

    @staticmethod
    def _raise_floor(line: _Line[T], delivered_upto: int) -> list[T]:
        line.floor = delivered_upto
        line.done = {seq for seq in line.done if seq > delivered_upto}
        dropped = sorted(seq for seq in line.partial if seq <= delivered_upto)
        tokens: list[T] = []
        for seq in dropped:
            tokens.extend(line.partial.pop(seq).all_tokens())
        return tokens


def _consistent(entry: _Entry[T], fragment: Fragment) -> bool:
    held = entry.chunks.get(fragment.index)
    return fragment.count == entry.count and (held is None or held == fragment.chunk)


#: The most bytes one line can hold in incomplete entries.
MAX_HELD_BYTES_PER_LINE = MAX_PARTIAL * MAX_FRAGMENTS * CHUNK
