"""Console settings: the ``[console]`` table of ``station.toml``, then the ``--console`` flag.

```toml
[console]
address = "127.0.0.1:7480"   # or "off"; port 0 picks a free port
session_seconds = 43200      # a login lasts this long (a 12-hour shift)
lockout_attempts = 5         # failed logins per (name, address) before each waits 1, 2, 4 ... s
lockout_seconds = 300        # ... the longest wait
trusted_proxies = []         # TLS proxies whose X-Forwarded-For/-Proto are believed, e.g. ["127.0.0.1"]
```

Unknown keys and wrong types are refused by name, as in the ``[station]`` table.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backchannel.errors import ConfigError
from backchannel.tomlfile import read_table

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7480
OFF = ("off", "no", "none", "false")


@dataclass(frozen=True)
class ConsoleSettings:
    #: Serve the console at all (``--console off`` turns it off).
    enabled: bool = True
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    session_seconds: float = 12 * 3600.0
    lockout_attempts: int = 5
    lockout_seconds: float = 300.0
    #: Addresses (or networks) of TLS proxies in front of the console. Only their
    #: ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed: the client's address for
    #: login throttling, and ``https`` to make cookies ``Secure``. Empty: headers ignored.
    trusted_proxies: tuple[str, ...] = ()

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @classmethod
    def load(
        cls, path: Path | None, address: str | None = None, *, required: bool = False
    ) -> ConsoleSettings:
        """The ``[console]`` table of ``path``, then ``address`` from the flag (a missing file is
        an error only when ``required``, as for :meth:`StationConfig.load`)."""
        settings = cls()
        if path is not None:
            settings = settings.merge(read_table(path, "console", required=required), str(path))
        if address is not None:
            settings = settings.merge({"address": address}, "--console")
        return settings

    def merge(self, values: dict[str, Any], where: str) -> ConsoleSettings:
        changes: dict[str, Any] = {}
        for key, value in values.items():
            what = f"{where}: {key!r}"
            if key == "address":
                if not isinstance(value, str):
                    raise ConfigError(f'{what} must be HOST:PORT or "off"')
                changes.update(parse_address(value, what))
            elif key in ("session_seconds", "lockout_seconds"):
                changes[key] = float(_positive(value, what))
            elif key == "lockout_attempts":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ConfigError(f"{what} must be a whole number")
                changes[key] = int(_positive(value, what))
            elif key == "trusted_proxies":
                changes[key] = _proxies(value, what)
            else:
                raise ConfigError(f"{where}: unknown console setting {key!r}")
        return replace(self, **changes)


def parse_address(text: str, what: str = "--console") -> dict[str, Any]:
    """``off``, ``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    text = text.strip()
    if text.lower() in OFF:
        return {"enabled": False}
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise ConfigError(f"{what}: {text!r} is not [IPv6]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{what}: {text!r} needs a port from 0 to 65535 (HOST:PORT, or off)")
    if not host:
        raise ConfigError(f"{what}: {text!r} needs a host (HOST:PORT, or off)")
    return {"enabled": True, "host": host, "port": int(port_text)}


def _proxies(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{what} must be a list of addresses, e.g. ["127.0.0.1"]')
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{what}: {item!r} is not an IP address or network") from None
    return tuple(value)


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number")
    if value <= 0:
        raise ConfigError(f"{what} must be greater than 0")
    return float(value)
