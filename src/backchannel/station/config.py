"""Station configuration: a TOML file (``station.toml`` in the station directory), then flags.

Unknown keys and wrong types are refused with a message naming the key, so a typo in a
config file is never silently ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from backchannel.errors import ConfigError


@dataclass(frozen=True)
class StationConfig:
    #: The relay used for new invitations when none is given.
    relay: str | None = None
    #: How long an invitation may wait to be accepted.
    invitation_ttl_hours: float = 168.0
    #: Longest pause between retries of an unsent frame.
    retry_max_seconds: float = 5.0
    #: Frames in flight to relays at once (pipelining window).
    send_window: int = 512

    @classmethod
    def load(cls, path: Path | None, **overrides: Any) -> StationConfig:
        config = cls()
        if path is not None and path.exists():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"the config file {path} cannot be read: {exc}") from None
            table = data.get("station", {})
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [station] must be a table")
            config = config._merge(table, str(path))
        return config._merge({k: v for k, v in overrides.items() if v is not None}, "flags")

    def _merge(self, values: dict[str, Any], where: str) -> StationConfig:
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{where}: unknown station setting {key!r}")
            expected = type(getattr(StationConfig(), key))
            if key == "relay":
                if not isinstance(value, str) or not value.startswith(("ws://", "wss://")):
                    raise ConfigError(f"{where}: 'relay' must be a ws:// or wss:// URL")
            elif expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif not isinstance(value, expected) or isinstance(value, bool):
                raise ConfigError(f"{where}: {key!r} must be a {expected.__name__}")
            if key in _POSITIVE and value <= 0:
                raise ConfigError(f"{where}: {key!r} must be greater than 0")
            changes[key] = value
        return replace(self, **changes)


_POSITIVE = ("invitation_ttl_hours", "retry_max_seconds", "send_window")
