"""A start that fails part-way closes what it opened: no task, thread, socket or file left.

Real relays (a subprocess, or the server in this process on real sockets) and a real station
(real keystore, real SQLite, a real link to the relay). What stays behind is counted from the
event loop (tasks), the interpreter (threads) and the kernel (this process's open files and
listening ports).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.errors import StorageError, TransportError
from backchannel.relay.config import RelayConfig
from backchannel.relay.server import RelayServer
from backchannel.station.config import StationConfig
from backchannel.station.control import socket_path
from backchannel.station.runner import lock_home, run_station
from backchannel.station.station import Station

from support.figures import figure
from support.relays import RelayProcess, start_relay

PASS = "correct horse battery staple"


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_relay_whose_metrics_port_is_taken_closes_its_listener_store_and_tasks(
    tmp_path: Path, taken_port: int
) -> None:
    port = free_port()
    config = RelayConfig(
        port=port, db_path=str(tmp_path / "relay.db"), metrics_listen=f"127.0.0.1:{taken_port}"
    )

    async def main() -> tuple[int, int]:
        threads, files = threading.active_count(), open_files()
        with pytest.raises(TransportError, match="cannot listen"):
            await RelayServer(config).start()
        await asyncio.sleep(0)
        assert other_tasks() == set()
        return threading.active_count() - threads, open_files() - files

    threads_left, files_left = asyncio.run(main())
    figure("threads left by a failed relay start", threads_left, "threads")
    figure("files left by a failed relay start", files_left, "fds")
    assert threads_left <= 0 and files_left <= 0
    with socket.socket() as sock:  # the WebSocket port it had opened is free again
        sock.bind(("127.0.0.1", port))


def test_a_relay_whose_database_cannot_be_opened_leaves_no_thread(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    config = RelayConfig(port=0, db_path=str(tmp_path / "a-directory.db"))

    async def main() -> int:
        threads = threading.active_count()
        with pytest.raises(StorageError):
            await RelayServer(config).start()
        assert other_tasks() == set()
        return threading.active_count() - threads

    threads_left = asyncio.run(main())
    figure("threads left by a relay whose database cannot open", threads_left, "threads")
    assert threads_left <= 0


class FailingService:
    """A service beside the control socket (as the console is) whose start fails."""

    async def start(self, station: Station) -> None:
        assert station.links_open() >= 1  # the station had connected to its relay
        raise RuntimeError("this service cannot start")

    def announcement(self) -> str:
        return "never"

    async def close(self) -> None:
        pass


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path)
    try:
        yield process
    finally:
        process.stop()


def test_a_station_whose_service_fails_to_start_closes_links_tasks_socket_and_database(
    tmp_path: Path, relay: RelayProcess
) -> None:
    home = tmp_path / "alpha"
    Station.init(home, "alpha", PASS)

    async def invite() -> None:  # a mailbox on the relay: the station links to it at start
        station = Station.open(home, PASS)
        await station.start()
        try:
            await station.invite(relay=relay.url)
        finally:
            await station.close()

    asyncio.run(invite())

    async def main() -> int:
        files = open_files()
        with pytest.raises(RuntimeError, match="cannot start"):
            await run_station(home, PASS, StationConfig(), services=[FailingService()])
        await asyncio.sleep(0)
        assert other_tasks() == set()
        return open_files() - files

    files_left = asyncio.run(main())
    figure("files left by a failed station start", files_left, "fds")
    assert files_left <= 0  # database, WAL, relay socket, control socket and lock all closed
    assert not socket_path(home).exists()
    os.close(lock_home(home))  # the directory lock was released
