"""Real station processes for integration and fault tests.

``StationProcess`` creates a station with the real CLI (``backchannel init``), runs it as
``backchannel station run`` in a subprocess, and talks to it through its control socket,
exactly as an operator's CLI does. ``kill()`` is SIGKILL: no shutdown code runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backchannel.errors import StationNotRunning, TransportError
from backchannel.station.control import ControlClient

from support.fast_kdf import SITE as FAST_SITE

PASSPHRASE = "correct horse battery staple"
ENV = {
    **os.environ,
    "BACKCHANNEL_PASSPHRASE": PASSPHRASE,
    # Light Argon2 in the processes tests start (support/fast_kdf.py): injected, never a switch.
    "PYTHONPATH": os.pathsep.join(p for p in (str(FAST_SITE), os.environ.get("PYTHONPATH", "")) if p),
    "PYTHONUNBUFFERED": "1",
    "COLUMNS": "200",
}


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real ``backchannel`` command against a station directory."""
    return subprocess.run(
        [sys.executable, "-m", "backchannel", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        input=stdin,
        timeout=timeout,
    )


class StationProcess:
    """A station process; ``console=True`` serves its console on a free port (``console_url``).

    Cover traffic is off (``--cover-rate 0``) so that the suite stays fast and its timings are
    those of the line itself; a test of cover passes ``cover_rate`` (frames/s per circuit), or
    ``cover_rate=None`` for the station's own setting (``station.toml``, else the product's
    default of 1/s).
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        extra_args: tuple[str, ...] = (),
        console: bool = False,
        env: dict[str, str] | None = None,
        home_name: str | None = None,
        cover_rate: float | None = 0.0,
    ) -> None:
        self.home = directory / (home_name or name)
        self.cover_rate = cover_rate
        self.name = name
        self.env = env or ENV  # the environment of its CLI calls and its process
        self.extra_args = extra_args
        self.console = console
        self.console_url: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        result = cli(self.home, "init", "--name", name, env=self.env)
        if result.returncode != 0:
            raise RuntimeError(f"init failed: {result.stderr}")

    def start(self, timeout: float = 30) -> None:
        stderr = open(self.home / "station.stderr", "a")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "backchannel",
                    "--home",
                    str(self.home),
                    "station",
                    "run",
                    "--log-level",
                    "INFO",
                    *self._console_args(),
                    *self._cover_args(),
                    *self.extra_args,
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=self.env,
            )
        finally:
            stderr.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if "running" in line:
                    console = re.search(r"; console at (\S+)", line)
                    self.console_url = console.group(1) if console else None
                    return
                if not line:
                    break
            elif self.proc.poll() is not None:
                break
        self.kill()  # never leave a half-started station behind
        raise RuntimeError(f"station {self.name} did not start:\n{self.stderr_text()[-3000:]}")

    def _cover_args(self) -> tuple[str, ...]:
        if self.cover_rate is None or "--cover-rate" in self.extra_args:
            return ()
        return ("--cover-rate", f"{self.cover_rate:g}")

    def _console_args(self) -> tuple[str, ...]:
        if "--console" in self.extra_args:
            return ()
        return ("--console", "127.0.0.1:0" if self.console else "off")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_pipe()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr_text(self) -> str:
        path = self.home / "station.stderr"
        return path.read_text() if path.exists() else ""

    def call(self, method: str, **params: Any) -> Any:
        with ControlClient(self.home, timeout=float(params.get("timeout", 30)) + 30) as client:
            return client.call(method, **params)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return cli(self.home, *args, stdin=stdin, env=self.env)


@contextlib.contextmanager
def started(
    directory: Path, *names: str, toml: dict[str, str] | None = None
) -> Iterator[list[StationProcess]]:
    """Start one station per name under ``directory`` (``toml``: its ``station.toml`` text, by
    name, written before it starts); every one is stopped afterwards, whatever happened."""
    running: list[StationProcess] = []
    try:
        for name in names:
            station = StationProcess(directory, name)
            if toml and name in toml:
                (station.home / "station.toml").write_text(toml[name])
            running.append(station)
            station.start()
        yield running
    finally:
        for station in running:
            station.stop()


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (StationNotRunning, TransportError) as exc:
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_error})")


def pair(
    inviter: StationProcess, accepter: StationProcess, relay_url: str, inviter_line: str | None = None
) -> tuple[str, str]:
    """Pair two running stations through the real CLI; returns (inviter's line, accepter's line)."""
    args = ["invite", "--relay", relay_url, "--json"]
    if inviter_line:
        args += ["--name", inviter_line]
    result = inviter.cli(*args)
    assert result.returncode == 0, result.stderr
    text = json.loads(result.stdout)["text"]
    accepted = accepter.cli("accept", text, "--json")
    assert accepted.returncode == 0, accepted.stderr
    accepter_line = json.loads(accepted.stdout)["name"]
    wait_until(
        "the line to be established",
        lambda: accepter.call("line", name=accepter_line)["state"] == "established",
    )
    lines = inviter.call("lines")
    assert len(lines) >= 1
    return (inviter_line or lines[-1]["name"]), accepter_line


def heads_equal(a: StationProcess, line_a: str, b: StationProcess, line_b: str) -> bool:
    ta, tb = a.call("transcript", line=line_a), b.call("transcript", line=line_b)
    with open("/tmp/engine_heads.txt", "a") as f:
        print("HEADS", ta, tb, file=f)
    return bool(ta["head"] == tb["head"])
