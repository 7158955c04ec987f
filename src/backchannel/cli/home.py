"""Whether a station directory holds a station, told before anything tries to use it.

Every command that needs a station checks its directory first, so that a mistyped ``--home``
(or a ``$BACKCHANNEL_HOME`` from another shell) gets one line saying what is missing and how
to create it, rather than a traceback from deep inside (``station run``) or "start it with
``station run``" (the control commands), which only leads to the first.
"""

from __future__ import annotations

from pathlib import Path

from backchannel.errors import StationNotInitialised


def require_station(home: Path) -> None:
    """Raise :class:`StationNotInitialised` naming what is missing in ``home`` and what to run."""
    # Imported here: the station module is heavy, and `completion` (on every Tab) never needs it.
    from backchannel.station.home import DATABASE, KEYSTORE

    create = f"`backchannel --home {home} init --name NAME`"
    elsewhere = "or point --home (or $BACKCHANNEL_HOME) at the station's directory"
    if not home.exists():
        raise StationNotInitialised(
            f"there is no station directory {home}. Create a station with {create}, {elsewhere}."
        )
    if not home.is_dir():
        raise StationNotInitialised(f"{home} is a file, not a station directory; {elsewhere}.")
    if not (home / KEYSTORE).exists():
        raise StationNotInitialised(
            f"no station lives in {home} (it has no {KEYSTORE}). Create one with {create}, {elsewhere}."
        )
    if not (home / DATABASE).exists():
        raise StationNotInitialised(
            f"the station in {home} is incomplete: {KEYSTORE} is there but {DATABASE} is missing. "
            f"Restore {DATABASE} from a backup, or move {home} aside and run {create} again."
        )
