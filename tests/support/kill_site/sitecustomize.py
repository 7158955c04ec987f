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
import sys
from pathlib import Path

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


# ---- mailbox rotation (tests/faults/test_rotation_crash.py) ----------------------------------
# The file ``die-at-rotation`` in the station's directory names one step; the station dies by
# SIGKILL there (the file removed first, so it dies once):
#   created   - fresh mailboxes CREATEd at the relays, inside the transaction, before its commit
#   committed - the rotation committed; nothing sent, nothing subscribed yet
#   applied   - the peer's ``seen`` covered the change, inside the receive transaction
#   deleted   - the relay answered OK to the DELETE; the retired row not yet forgotten
import backchannel.station.links as _links  # noqa: E402
import backchannel.station.store.lines as _store_lines  # noqa: E402


def _die_at(step: str) -> None:
    """SIGKILL this station now if its ``die-at-rotation`` file names ``step``."""
    args = sys.argv
    if "--home" not in args:
        return
    trigger = Path(args[args.index("--home") + 1]) / "die-at-rotation"
    try:
        wanted = trigger.read_text().strip()
    except OSError:
        return
    if wanted == step:
        trigger.unlink()
        os.kill(os.getpid(), signal.SIGKILL)


_room = _store_lines.LinesRoom
_set_rotation, _rotation_applied = _room.set_rotation, _room.rotation_applied
_forget_rotated = _room.forget_rotated


def _set_rotation_die(self, line_id, rotated_at, due_at):  # type: ignore[no-untyped-def]
    if rotated_at is not None:
        _die_at("created")
    return _set_rotation(self, line_id, rotated_at, due_at)


def _rotation_applied_die(self, *args):  # type: ignore[no-untyped-def]
    found = _rotation_applied(self, *args)
    if found:
        _die_at("applied")
    return found


def _forget_rotated_die(self, recv_id):  # type: ignore[no-untyped-def]
    _die_at("deleted")
    return _forget_rotated(self, recv_id)


_room.set_rotation = _set_rotation_die  # type: ignore[method-assign]
_room.rotation_applied = _rotation_applied_die  # type: ignore[method-assign]
_room.forget_rotated = _forget_rotated_die  # type: ignore[method-assign]

_subscribe = _links.Links.subscribe


def _subscribe_die(self, url, recv_id, seed, line_id):  # type: ignore[no-untyped-def]
    _die_at("committed")  # (the first subscribe after a rotation's commit)
    return _subscribe(self, url, recv_id, seed, line_id)


_links.Links.subscribe = _subscribe_die  # type: ignore[method-assign]

# Only the first sitecustomize on the path runs: this one also does what fast_site's does.
import runpy  # noqa: E402

runpy.run_path(str(Path(__file__).resolve().parent.parent / "fast_site" / "sitecustomize.py"))
