"""Test only: turns a station process into one that sends names no conforming station sends.

``support.hostile`` puts this directory first on ``PYTHONPATH`` of one station (its CLI calls
and its ``station run`` process), so Python imports this module at start-up. It lifts the
station's own checks on its name (``init``, in ``station.home``) and on an acknowledging
operator's name (``ack``, in ``station.station``): the real station code then seals such names
into a real hello or ack, exactly as modified software on the peer's side would. Nothing in
``src/`` knows about it.
"""

import backchannel.station.home as _home
import backchannel.station.station as _station

_home.valid_name = lambda name: bool(name)  # type: ignore[attr-defined]
_station.valid_name = lambda name: bool(name)  # type: ignore[attr-defined]

# Only the first sitecustomize on the path runs: this one also does what fast_site's does.
import runpy  # noqa: E402
from pathlib import Path  # noqa: E402

runpy.run_path(str(Path(__file__).resolve().parent.parent / "fast_site" / "sitecustomize.py"))
