"""Running a station as a process: lock the directory, open, serve the control socket, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from backchannel import aio
from backchannel.errors import StationAlreadyRunning
from backchannel.station.config import StationConfig
from backchannel.station.control import ControlServer, prepare_socket_dir, socket_path
from backchannel.station.station import Station


class Service(Protocol):
    """Something that runs in the station process beside the control socket (the console)."""

    async def start(self, station: Station) -> None: ...

    def announcement(self) -> str:
        """What ``station run`` adds to its *running* line (where to reach the service)."""
        ...

    async def close(self) -> None: ...


def lock_home(home: Path) -> int:
    """Take the station directory's lock, so two processes never drive one store."""
    fd = os.open(home / "station.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StationAlreadyRunning(f"a station process already runs in {home}") from None
    return fd


async def run_station(
    home: Path,
    passphrase: str,
    config: StationConfig,
    on_ready: Callable[[Station, Path], None] | None = None,
    stop: asyncio.Event | None = None,
    services: Sequence[Service] = (),
) -> None:
    """Run the station until ``stop`` (or SIGTERM/SIGINT), then close everything.

    Each part is registered for closing *before* it starts, so whether the run ends normally
    or a start fails part-way (a service, the control socket), everything already opened is
    closed in reverse order: services, control socket, station (its tasks, relay links and
    database), the socket file, the directory lock.
    """
    async with contextlib.AsyncExitStack() as opened:
        lock = lock_home(home)
        opened.callback(os.close, lock)
        path = socket_path(home)
        prepare_socket_dir(path)  # refuse an unsafe socket directory before touching any line
        station = Station.open(home, passphrase, config)
        opened.push_async_callback(station.close)
        control = ControlServer(station)
        await station.start()
        opened.callback(_remove, path)
        opened.push_async_callback(control.close)
        await control.start(path)
        for service in services:
            opened.push_async_callback(service.close)
            await service.start(station)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if on_ready:
            on_ready(station, path)
        await stop.wait()


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def main_run(
    home: Path,
    passphrase: str,
    config: StationConfig,
    log_level: str = "WARNING",
    services: Sequence[Service] = (),
) -> None:
    logging.basicConfig(
        level=log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if config.metrics_listen:  # ([station.metrics] listen: a listener of its own, station.metrics)
        from backchannel.station.metrics import MetricsService

        services = [*services, MetricsService(config)]

    def ready(station: Station, path: Path) -> None:
        extra = "".join(f"; {service.announcement()}" for service in services)
        print(f"station {station.name} running in {home}; control socket {path}{extra}", flush=True)

    profile = os.environ.get("BACKCHANNEL_PROFILE")
    if profile:  # for `make bench` investigations: where does a station spend its time?
        import cProfile

        cProfile.runctx(
            "asyncio.run(run_station(home, passphrase, config, ready, services=services))",
            globals(),
            locals(),
            f"{profile}.{os.getpid()}",
        )
        return
    aio.run(run_station(home, passphrase, config, ready, services=services))
