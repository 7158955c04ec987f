"""Run a module under cProfile, every thread included, and write the merged stats at exit.

``python bench/profiled.py OUT.prof -m backchannel station run ...`` runs ``backchannel`` as
``python -m`` would, with one ``cProfile.Profile`` per thread (the main thread and every thread
started later: the relay's and the station's database workers, where the commits and their
fsyncs run), and writes all of them merged into ``OUT.prof`` when the module returns (SIGTERM
makes the relay and the station return normally). cProfile's clock is wall time, so a
function's time includes what it waited for (an fsync, a socket).

Used by ``bench/profile_line.py``; a profiled process runs slower than a plain one, so these
stats say where the time goes, not how much there is.
"""

from __future__ import annotations

import cProfile
import pstats
import runpy
import sys
import threading
from types import FrameType
from typing import Any


def main() -> None:
    out, flag, module = sys.argv[1], sys.argv[2], sys.argv[3]
    if flag != "-m":
        raise SystemExit("usage: profiled.py OUT.prof -m MODULE [ARGS...]")
    sys.argv = [module, *sys.argv[4:]]
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()

    threading.setprofile(start_in_thread)
    main_profile = cProfile.Profile()
    profiles.append(main_profile)
    main_profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        main_profile.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        with lock:
            stats = pstats.Stats(main_profile)
            for profile in profiles[1:]:
                profile.disable()
                stats.add(profile)
        stats.dump_stats(out)


if __name__ == "__main__":
    main()
