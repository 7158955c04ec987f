"""Serving the console inside the station process, on the station's own event loop.

:class:`ConsoleService` is handed to :func:`backchannel.station.runner.run_station`, which
starts it once the station and its control socket are up and closes it before the station.
It binds its socket itself (so port 0 picks a free port and the real one is known) and runs
uvicorn without uvicorn's signal handling: SIGTERM and SIGINT belong to the station, which
stops the console as part of its own orderly shutdown.

If the address cannot be bound (another station on this machine already serves the default
port, say) the station keeps running without a console and says so: the line matters more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from pathlib import Path

import uvicorn

from backchannel.aio import TaskSet
from backchannel.console.app import Console
from backchannel.console.settings import ConsoleSettings
from backchannel.station.operators import Operators
from backchannel.station.station import DATABASE, Station
from backchannel.station.store import Store

log = logging.getLogger("backchannel.console")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:  # the station owns the signals
        yield


class ConsoleService:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.url: str | None = None
        self.problem: str | None = None
        self.console: Console | None = None
        self._store: Store | None = None
        self._server: _Server | None = None
        self._tasks = TaskSet("console")
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_options(
        cls, config_file: Path | None, address: str | None, *, required: bool = False
    ) -> ConsoleService | None:
        """The service for ``station run``, or None when the console is off."""
        settings = ConsoleSettings.load(config_file, address, required=required)
        return cls(settings) if settings.enabled else None

    async def start(self, station: Station) -> None:
        s = self.settings
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((s.host, s.port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            self.problem = f"console not started: cannot listen on {s.host}:{s.port} ({exc.strerror})"
            log.error("%s", self.problem)
            return
        port = int(sock.getsockname()[1])
        if not s.loopback:
            log.warning("the console listens on %s without TLS: put it behind a TLS proxy", s.host)
        try:
            self._store = Store.open(station.home / DATABASE)
        except BaseException:
            sock.close()
            raise
        operators = Operators(
            self._store,
            lockout_attempts=s.lockout_attempts,
            lockout_seconds=s.lockout_seconds,
            session_seconds=s.session_seconds,
        )
        self.console = Console(station, operators, s, port)
        config = uvicorn.Config(
            self.console.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            # Forwarded headers are believed only from the proxies the operator listed.
            proxy_headers=bool(s.trusted_proxies),
            forwarded_allow_ips=list(s.trusted_proxies) or None,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = self._tasks.spawn(self._server.serve(sockets=[sock]), "console")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        host = f"[{s.host}]" if ":" in s.host else s.host
        self.url = f"http://{host}:{port}"

    def announcement(self) -> str:
        """The line ``station run`` prints: where the console is, or why there is none."""
        return f"console at {self.url}" if self.url else (self.problem or "console off")

    async def close(self) -> None:
        if self.console is not None:
            await self.console.close()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), 10)
        await self._tasks.close()
        if self._store is not None:
            self._store.close()
            self._store = None
