"""The read-only questions the line engine asks of stored state.

The engine never writes: what it wants stored comes back as effects. Holding frames ahead of
a gap is the one piece of protocol state that lives only on disk (it can be large), so the
engine asks about it here.
"""

from __future__ import annotations

from typing import Protocol


class Ledger(Protocol):
    def is_held(self, line_id: bytes, seq: int) -> bool:
        """Whether frame ``seq`` is held ahead of a gap."""
        ...

    def held(self, line_id: bytes, seq: int) -> bytes | None:
        """The held frame ``seq``, if any (not removed: that is the ``ReleaseHeld`` effect)."""
        ...

    def held_count(self, line_id: bytes) -> int:
        """How many frames of the line are held."""
        ...
