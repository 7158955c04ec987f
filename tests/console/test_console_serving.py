"""How the station serves its console: the address it prints, and a taken port not stopping it."""

from __future__ import annotations

import socket
from pathlib import Path

from support.console import fetch
from support.stations import StationProcess


def test_a_taken_console_port_leaves_the_station_running_without_a_console(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        station = StationProcess(tmp_path, "alpha", extra_args=("--console", f"127.0.0.1:{port}"))
        station.start()
        try:
            assert station.console_url is None
            assert station.call("ping")["name"] == "alpha"
            assert "console not started: cannot listen on 127.0.0.1" in station.stderr_text()
        finally:
            station.stop()


def test_the_console_address_is_printed_and_answers_health(tmp_path: Path) -> None:
    station = StationProcess(tmp_path, "bravo", console=True)
    station.start()
    try:
        assert station.console_url is not None and station.console_url.startswith("http://127.0.0.1:")
        assert fetch(f"{station.console_url}/health").body == "ok"
    finally:
        station.stop()
    assert not station.running
