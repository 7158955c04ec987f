"""A throwaway PostgreSQL cluster from Debian's package, for tests of the relay's PostgreSQL store.

``initdb`` refuses to run as root and pytest's ``tmp_path`` is private to root, so the cluster
lives in a fresh ``/tmp`` directory owned by ``postgres``, listens on 127.0.0.1 only (and a
socket in that directory), trusts local connections, and is stopped and deleted by ``stop()``
whatever happened. ``make test`` installs the ``postgresql`` package when ``initdb`` is missing.
Each test asks for a database of its own (``new_database``), so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg


def initdb_path() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    def __init__(self) -> None:
        initdb = initdb_path()
        if initdb is None:
            raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs it with apt")
        self._bin = Path(initdb).parent
        self.directory = Path(tempfile.mkdtemp(prefix="pgtest-", dir="/tmp"))
        shutil.chown(self.directory, "postgres", "postgres")
        self.port = _free_port()
        self._count = 0
        self._started = False

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60
        )

    def start(self) -> None:
        data = str(self.directory / "data")
        self._started = True  # (stop() must try even if pg_ctl start timed out half-way)
        self._as_postgres(
            str(self._bin / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        self._as_postgres(
            str(self._bin / "pg_ctl"), "-D", str(self.directory / "data"),
            "-l", str(self.directory / "pg.log"), "-w", "start",
            "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1",
        )  # fmt: skip

    def postmaster_pid(self) -> int:
        """The server's main process (the first line of ``postmaster.pid``)."""
        return int((self.directory / "data" / "postmaster.pid").read_text().split()[0])

    def server_pids(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, WAL writer...)."""
        main = self.postmaster_pid()
        pids = [main]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = (Path("/proc") / entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == main:
                    pids.append(int(entry))
        return pids

    def kill_hard(self) -> None:
        """SIGKILL the whole server at once, as a crash or an OOM kill would: no shutdown
        checkpoint; the next start runs crash recovery from the write-ahead log."""
        for pid in self.server_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def restart_after_crash(self) -> None:
        """Start again on the same port and data (waits until it accepts connections)."""
        self._pg_ctl_start()

    def pause(self) -> list[int]:
        """SIGSTOP every server process: connections stay open, nothing answers."""
        pids = self.server_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def resume(pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        self._count += 1
        name = f"relay{self._count}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            if self._started and (self.directory / "data" / "postmaster.pid").exists():
                self._as_postgres(
                    str(self._bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop"
                )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
