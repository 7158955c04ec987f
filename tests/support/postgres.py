"""A throwaway PostgreSQL cluster from Debian's package, for tests of the relay's PostgreSQL store.

``initdb`` refuses to run as root and pytest's ``tmp_path`` is private to root, so the cluster
lives in a fresh ``/tmp`` directory owned by ``postgres``, listens on 127.0.0.1 only (and a
socket in that directory), trusts local connections, and is stopped and deleted by ``stop()``
whatever happened. ``make test`` installs the ``postgresql`` package when ``initdb`` is missing.
Each test asks for a database of its own (``new_database``), so tests never see each other's rows.
"""

from __future__ import annotations

import glob
import shutil
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
        self._as_postgres(
            str(self._bin / "pg_ctl"), "-D", data, "-l", str(self.directory / "pg.log"), "-w", "start",
            "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1",
        )  # fmt: skip

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
