"""`make demo` installs only the runtime dependencies; `make test` the development toolchain too.

Installing for real would fetch packages from the registry on every run, so the Makefile is
checked with `make -n` (what it would run, on a virtualenv path that does not exist) and the
runtime is checked by importing every entry point with the development packages made
unimportable: if the CLI, the station, the relay or the console needed one of them, the demo
installed without `[dev]` would fail on a fresh clone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.figures import figure

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("pytest", "hypothesis", "ruff", "mypy", "importlinter", "playwright", "_pytest")


def dry_run(target: str, tmp_path: Path) -> list[str]:
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "pip install" in line]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_the_runtime_only_and_make_test_the_dev_tools(tmp_path: Path) -> None:
    demo = dry_run("demo", tmp_path)
    test = dry_run("venv", tmp_path)
    assert demo and all("[dev]" not in line and line.rstrip().endswith("-e .") for line in demo), demo
    assert test and any("-e '.[dev]'" in line for line in test), test
    figure("pip installs of make demo naming [dev]", sum("[dev]" in line for line in demo), "commands")


def test_every_entry_point_imports_without_the_development_packages() -> None:
    blocker = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {DEV_ONLY!r}:
            raise ImportError("development-only package imported at run time: " + name)
        return None
sys.meta_path.insert(0, Block())
import backchannel.cli.main, backchannel.cli.demo, backchannel.station.station, backchannel.station.runner
import backchannel.relay.server, backchannel.console.server, backchannel.station.alarm_sinks
import httpx
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
