"""A real relay in a real subprocess, for integration and fault tests.

``start_relay(tmp_path)`` runs ``python -m backchannel.relay --port 0`` on a database in
``tmp_path`` and parses its ``relay listening on ws://…`` line. The fixtures stop every
relay they started, even when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client.parser import text_string_to_metric_families

READY_PREFIX = "relay listening on "
START_TIMEOUT = 15.0


class RelayProcess:
    """A relay subprocess; ``restart`` keeps its database and port (so URLs stay valid)."""

    def __init__(
        self,
        directory: Path,
        config: dict[str, Any] | None = None,
        db: str | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        #: Further command-line options of ``python -m backchannel.relay``.
        self.args = args
        directory.mkdir(parents=True, exist_ok=True)
        self.db_path = directory / "relay.db"
        #: where the relay keeps its frames: the SQLite file, or a postgresql:// URL
        self.db = db or str(self.db_path)
        self.config_path: Path | None = None
        if config:
            self.config_path = directory / "relay.toml"
            self.config_path.write_text(_toml_table("relay", config))
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._start()

    @property
    def http_url(self) -> str:
        """The relay's own port over HTTP(S): without the URL's pin (a TLS relay's certificate
        is self-signed: read its metrics on a ``metrics_listen`` address instead)."""
        base = self.url.partition("#")[0]
        return base.replace("wss://", "https://", 1).replace("ws://", "http://", 1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what the relay said was stored must survive."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def restart(self) -> None:
        """Stop (if running) and start again on the same database and port."""
        self.stop()
        self._start()

    def stderr_text(self) -> str:
        path = self.directory / "relay.stderr"
        return path.read_text() if path.exists() else ""

    def metrics_url(self) -> str:
        """Where the relay said it serves /metrics (``metrics_listen``), from its log."""
        lines = [line for line in self.stderr_text().splitlines() if "relay metrics on " in line]
        assert lines, "this relay serves no separate metrics address"
        return lines[-1].split("relay metrics on ", 1)[1].strip()

    def _start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "backchannel.relay",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            self.db,
        ]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        cmd += self.args
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # a restart may race the kernel releasing the old port
            stderr = open(self.directory / "relay.stderr", "a")  # noqa: SIM115
            try:
                self.proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            finally:
                stderr.close()
            line = _read_line(self.proc, deadline)
            if line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX) :].strip()
                self.port = int(self.url.partition("#")[0].rsplit(":", 1)[1])  # (wss://…#pin=…)
                return
            self.proc.wait(timeout=10)
            if time.monotonic() > deadline:
                raise RuntimeError(f"relay did not start: {line!r}\n{self.stderr_text()}")
            time.sleep(0.1)


def start_relay(
    tmp_path: Path,
    config: dict[str, Any] | None = None,
    name: str = "relay",
    db: str | None = None,
    args: tuple[str, ...] = (),
) -> RelayProcess:
    """Start a relay subprocess under ``tmp_path/name`` (on ``db``, a postgresql:// URL, if
    given; else on an SQLite file there; ``args``: further options). The caller must ``stop()`` it."""
    return RelayProcess(tmp_path / name, config, db, args)


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc.kill()
            return ""
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.2))
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            return ""


def _toml_table(name: str, values: dict[str, Any]) -> str:
    lines = [f"[{name}]"]
    for key, value in values.items():
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, str):
            rendered = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            rendered = repr(value)
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run one coroutine to completion from a synchronous test, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def metrics(relay: RelayProcess, url: str = "", token: str = "") -> dict[str, int]:
    """The relay's counters and gauges from its /metrics endpoint (prometheus_client's text
    format, read with its own parser), by short name: ``stored`` for
    ``backchannel_relay_stored_total``; a labelled sample as ``refused{reason=quota}``.
    ``url``: a separate metrics address; ``token``: its bearer token."""
    request = urllib.request.Request(
        url or relay.http_url + "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        value_name = {"counter": family.name + "_total", "gauge": family.name}.get(family.type)
        if value_name is None or (family.type == "gauge" and family.name.endswith("_seconds_created")):
            continue  # (histograms have their own helpers; *_seconds_created are their start times)
        short = family.name.removeprefix("backchannel_relay_")
        for sample in family.samples:
            if sample.name != value_name:
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{short}{{{labels}}}" if labels else short] = int(sample.value)
    return out
