"""HAProxy from Debian in front of several relay processes: one address, several processes.

``HaproxyProcess`` writes the configuration of docs/OPERATIONS.md ("Several relay processes on
one PostgreSQL") for the given relay ports, checks it with ``haproxy -c``, and runs
``haproxy -db`` (in the foreground) listening on a free port of 127.0.0.1 only. ``make test``
installs the ``haproxy`` package when it is missing. ``stop()`` ends it whatever happened.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def haproxy_path() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def config_text(
    port: int, relay_ports: list[int], health_interval: str = "1s", tls_pem: Path | None = None
) -> str:
    """The deployment's configuration: WebSocket connections spread over the relay processes,
    each checked on its ``/health``; a connection stays on its process for its whole life.
    ``tls_pem`` (certificate and key in one PEM file): HAProxy terminates TLS (``wss://``)."""
    tls = f" ssl crt {tls_pem}" if tls_pem is not None else ""
    servers = "\n".join(
        f"    server relay{n} 127.0.0.1:{p} check inter {health_interval} fall 2 rise 1"
        for n, p in enumerate(relay_ports, 1)
    )
    return f"""global
    # Each connection holds two descriptors (client and relay side): mind `ulimit -n`.
    maxconn 4096

defaults
    mode http
    option http-server-close
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # A WebSocket is a tunnel once upgraded: the relay's own pings keep it alive.
    timeout tunnel 1h

frontend relay
    bind 127.0.0.1:{port}{tls}
    default_backend relays

backend relays
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
{servers}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HaproxyProcess:
    def __init__(self, directory: Path, relay_ports: list[int], tls_pem: Path | None = None) -> None:
        binary = haproxy_path()
        if binary is None:
            raise RuntimeError("HAProxy is not installed: run `make test`, which installs it with apt")
        directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.config_path = directory / "haproxy.cfg"
        self.config_path.write_text(config_text(self.port, relay_ports, tls_pem=tls_pem))
        self.scheme = "ws" if tls_pem is None else "wss"
        check = subprocess.run([binary, "-c", "-f", str(self.config_path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its configuration:\n{check.stdout}{check.stderr}")
        self._log = open(directory / "haproxy.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(self.config_path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (directory / "haproxy.log").read_text()
                    raise RuntimeError(f"haproxy did not start: {log}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
