"""Test only: a station process that dies by SIGKILL after accepting a send, before answering.

``tests/faults/test_idempotent_send.py`` puts this directory first on ``PYTHONPATH`` of one
station. When the file ``die-after-send`` exists in the station's directory, the next
``Station.send`` that returns (the message stored and committed) removes the file and kills
the process with SIGKILL before the control socket can answer: the client is left not
knowing whether its send was accepted, exactly as after a power cut at that instant. Nothing
in ``src/`` knows about it.
"""

import os
import signal

import backchannel.station.station as _station

_send = _station.Station.send


async def _send_then_die(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    result = await _send(self, *args, **kwargs)
    trigger = self.home / "die-after-send"
    if trigger.exists():
        trigger.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return result


_station.Station.send = _send_then_die  # type: ignore[method-assign]

# Only the first sitecustomize on the path runs: this one also does what fast_site's does.
import runpy  # noqa: E402
from pathlib import Path  # noqa: E402

runpy.run_path(str(Path(__file__).resolve().parent.parent / "fast_site" / "sitecustomize.py"))
