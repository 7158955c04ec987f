"""Reading one table of a TOML config file: the one loader the station, console and relay share.

A station directory may hold one ``station.toml`` with ``[station]`` and ``[console]`` tables,
and a shared file may configure a relay too: each reader takes its own table and leaves the
others alone. A file the operator *named* (``--config``) must exist — a typo in the path must
not start a station or relay silently on defaults — while a default location that holds no
file simply means "all defaults".
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from backchannel.errors import ConfigError


def read_table(path: Path | str, table: str, *, required: bool = True) -> dict[str, Any]:
    """The ``[table]`` of the TOML file at ``path`` (empty if the file has none).

    A missing file is ``{}`` when not ``required``; every other problem is a ``ConfigError``
    naming the file.
    """
    path = Path(path)
    if not required and not path.exists():
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"the config file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the config file {path} cannot be read: it is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} cannot be read: it is not valid TOML: {exc}") from None
    found = document.get(table, {})
    if not isinstance(found, dict):
        raise ConfigError(f"{path}: [{table}] must be a table")
    return dict(found)
