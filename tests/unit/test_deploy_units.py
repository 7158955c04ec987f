"""The systemd units in deploy/: valid for systemd, and hardened.

Always: each unit is parsed and must carry the hardening keys (a unit that drops one fails).
When `systemd-analyze` is installed (it is in the Debian container `make test` runs in), the
units are also checked by systemd itself: `verify` (with ExecStart pointed at this checkout's
`backchannel`, since /opt/backchannel does not exist here; any "Unknown key" or "ignoring"
warning fails the test) and `security --offline=yes`, whose exposure score (0 best, 10 worst)
is the figure recorded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.figures import figure

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ("backchannel-relay.service", "backchannel-station.service")
INSTALLED = "/opt/backchannel/.venv/bin/backchannel"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallFilter": "@system-service",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "UMask": "0077",
}
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def service_settings(unit: Path) -> dict[str, list[str]]:
    """The [Service] section's keys and their values (a key may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_carries_the_hardening_keys(name: str) -> None:
    settings = service_settings(DEPLOY / name)
    for key, value in HARDENING.items():
        assert value in settings.get(key, []), f"{name}: {key}={value} missing"
    assert settings.get("DynamicUser") == ["yes"] or settings.get("User"), f"{name}: runs as root"
    assert settings.get("ReadWritePaths") and settings.get("StateDirectory")
    assert settings["ExecStart"][0].startswith(INSTALLED)
    assert "passphrase" not in " ".join(settings.get("Environment", [])).lower()
    env_file = settings["EnvironmentFile"][0]
    example = DEPLOY / (Path(env_file).stem + ".env.example")
    assert example.is_file(), f"{name} reads {env_file}: deploy/ must hold {example.name}"


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_accepts_the_unit_and_rates_it_hardened(name: str, tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    here = Path(sys.executable).parent / "backchannel"
    unit = tmp_path / name
    unit.write_text((DEPLOY / name).read_text(encoding="utf-8").replace(INSTALLED, str(here)))
    verify = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    problems = [ln for ln in verify.stderr.splitlines() if name in ln or "Unknown" in ln or "ignoring" in ln]
    assert not problems, problems
    security = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout + security.stderr)
    assert found, security.stdout[-500:] + security.stderr[-500:]
    exposure = float(found.group(1))
    figure(f"systemd-analyze security exposure of {name} (verify ran)", exposure, "of 10")
    assert exposure <= 2.5
