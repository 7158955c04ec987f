"""The duty settings of issue 12 in ``station.toml``: refused FLASH per line, FLASH alarms,
the pairing timeout; typos and wrong types are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.errors import ConfigError
from backchannel.station.config import StationConfig


def load(tmp_path: Path, text: str) -> StationConfig:
    path = tmp_path / "station.toml"
    path.write_text(text)
    return StationConfig.load(path)


def test_refuse_flash_per_line_overrides_the_station_default(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "[station]\nrefuse_flash_unverified = true\nalarm_on_flash = true\npairing_timeout = 5\n"
        "[station.lines.moscow]\nrefuse_flash_unverified = false\n"
        "[station.lines.paris]\nrelease = 'flash'\n",
    )
    assert not config.refuses_flash_unverified("moscow")
    assert config.refuses_flash_unverified("paris") and config.refuses_flash_unverified("other")
    assert config.alarm_on_flash and config.pairing_timeout == 5.0
    assert not StationConfig().refuses_flash_unverified("moscow")  # off by default
    assert StationConfig().pairing_timeout == 60.0


@pytest.mark.parametrize(
    "text",
    [
        "[station.lines.moscow]\nrefuse_flash_unverified = 'yes'\n",
        "[station.lines.moscow]\nrefuse_flash = true\n",
        "[station]\npairing_timeout = 0\n",
        "[station]\nalarm_on_flash = 1\n",
    ],
)
def test_bad_duty_settings_are_refused_by_name(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, text)
