"""A hostile peer: the other station of a line, sending circuit changes of its own making.

The peer's station is stopped, then opened in this process (real keystore, real database,
real relays) to seal and send ``circuits`` payloads naming whatever relays it likes, with
capabilities for mailboxes that do not exist — what a modified peer could send. It waits
until every frame is stored on a relay, then closes; the caller starts the process again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from backchannel.proto.invitation import MailboxCapability
from backchannel.proto.payloads import Circuits
from backchannel.station.config import StationConfig
from backchannel.station.station import Station

from support.stations import PASSPHRASE


async def _send_changes(home: Path, line: str, changes: list[Circuits], timeout: float) -> None:
    # (cover off, as the test stations run: these frames go at once, not at 1 per second)
    station = Station.open(home, PASSPHRASE, StationConfig.load(home / "station.toml", cover_rate=0))
    await station.start()
    try:
        line_id = station.find_line_id(line)
        assert line_id is not None
        for change in changes:
            station.send_payload(line_id, change, "circuits")
        async with asyncio.timeout(timeout):
            while station.sender.pending():
                await asyncio.sleep(0.05)
    finally:
        await station.close()


def send_circuit_changes(home: Path, line: str, changes: list[Circuits], timeout: float = 30.0) -> None:
    """Seal and send these changes on ``line`` from the (stopped) station in ``home``."""
    asyncio.run(_send_changes(home, line, changes, timeout))


def bogus_add(url: str, index: int) -> Circuits:
    """An add naming ``url`` with a capability for a mailbox that exists nowhere."""
    return Circuits((MailboxCapability(url, index.to_bytes(16, "big"), bytes([index]) * 32),), ())


def remove(url: str) -> Circuits:
    return Circuits((), (url,))


class ConnectionCounter:
    """A listening socket on 127.0.0.1 that counts connection attempts and closes each one."""

    def __init__(self) -> None:
        import socket
        import threading

        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.attempts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.attempts += 1
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
