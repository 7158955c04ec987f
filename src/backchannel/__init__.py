"""backchannel: a secure, discreet, always-on line between two stations.

The public Python API is :class:`backchannel.station.station.Station` (re-exported here
lazily so that importing the package does not pull in asyncio for users of the pure core).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from backchannel.station.station import Station as Station


def __getattr__(name: str) -> Any:
    if name == "Station":
        from backchannel.station.station import Station

        return Station
    raise AttributeError(name)
