"""A line as a running station holds it: its database row beside its live protocol objects.

The row is what is on disk; the protocol state and the Olm session are what the pure core
works on. The station writes both in the same transaction (see ``Station._persist``) and
reloads them from disk when a transaction fails, so the two never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.proto.engine.core import Lifecycle, LineCore
from backchannel.proto.engine.linkcheck import LineWatch
from backchannel.proto.engine.recovery import PeerReport
from backchannel.proto.line import LineState
from backchannel.proto.session import OlmSession
from backchannel.station.store import LineRow


@dataclass
class LiveLine:
    row: LineRow
    state: LineState
    session: OlmSession
    #: What the peer reported of our direction (the core's recovery state, in memory only);
    #: None until first needed, then taken from the record (``Monitor.init_peer``).
    peer: PeerReport | None = None
    #: The core's link watch (link tests, circuit health; in memory only): None until the
    #: monitor first needs it (``Monitor.watch``), then whatever the engine last returned.
    watch: LineWatch | None = None

    @property
    def line_id(self) -> bytes:
        return self.row.line_id

    @property
    def established(self) -> bool:
        return self.row.state == "established"

    @property
    def core(self) -> LineCore:
        """The engine's view of the line: its protocol state, lifecycle, peer report and watch."""
        return LineCore(
            self.state, Lifecycle(self.row.state), self.peer or PeerReport(), self.watch or LineWatch()
        )
