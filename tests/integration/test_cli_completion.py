"""Shell completion: `backchannel completion bash|zsh` prints a script that really completes.

The scripts are click's: they call `backchannel` back with `_BACKCHANNEL_COMPLETE` set. The
test sources the bash script in a real bash (when there is one) and asks it to complete, so a
script that is printed but never works fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backchannel.cli.main import cli

from support.figures import figure

BIN = str(Path(sys.executable).parent)  # the virtualenv's bin: where `backchannel` is installed


def backchannel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backchannel", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_completion_script_is_printed(shell: str) -> None:
    result = backchannel("completion", shell)
    assert result.returncode == 0, result.stderr
    assert "_BACKCHANNEL_COMPLETE" in result.stdout and "backchannel" in result.stdout
    assert f"{shell}_complete" in result.stdout


def test_the_completion_callback_lists_every_command() -> None:
    env = {"_BACKCHANNEL_COMPLETE": "bash_complete", "COMP_WORDS": "backchannel ", "COMP_CWORD": "1"}
    result = backchannel(env=env)
    offered = {line.split(",", 1)[1] for line in result.stdout.splitlines() if line.startswith("plain,")}
    assert set(cli.commands) <= offered, set(cli.commands) - offered
    for expected in ("ack", "inbox", "send", "status", "station", "completion"):
        assert expected in offered
    figure("commands offered by completion", len(offered), "commands")


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash to source the script in")
def test_bash_completes_with_the_sourced_script() -> None:
    script = (
        'eval "$(backchannel completion bash)"\n'
        "COMP_WORDS=(backchannel transcript ver); COMP_CWORD=2\n"
        "_backchannel_completion backchannel\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["verify", "verify-export"]
