"""The README's "Five minutes by hand" works as written.

The shell block of that section is taken from README.md and run in three bash processes, one per
"# terminal N" of the recipe, each section in its terminal once the previous section finished; the
lines before the first terminal and after the last ("in each terminal") run in all three. Only
its paths (`/tmp/...` into a temporary directory) and ports (7400, 7480, 7481 onto free ones) are
changed. Real processes: a relay and two stations started by the recipe itself with `&`, stopped
by the recipe's own `kill %1`, and by the test's finalizer (each terminal's process group) if a
step failed. Every section is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.figures import figure

ROOT = Path(__file__).resolve().parents[2]
SECTION_TIMEOUT = 120.0
DONE = "__readme_section_done__"


def by_hand_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Five minutes by hand") :]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "the by-hand section has no ```sh block"
    return found.group(1)


def sections(block: str) -> list[tuple[list[int], str]]:
    """(terminals, commands) in order: `# terminal N` switches; before and `# in each` mean all."""
    everyone = [1, 2, 3]
    out: list[tuple[list[int], list[str]]] = [(everyone, [])]
    for line in block.splitlines():
        switch = re.match(r"#\s*terminal (\d)", line)
        if switch:
            out.append(([int(switch.group(1))], []))
        elif re.match(r"#\s*in each terminal", line):
            out.append((everyone, []))
        out[-1][1].append(line)
    return [(terminals, "\n".join(lines)) for terminals, lines in out if any(ln.strip() for ln in lines)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Terminal:
    """One bash, fed the recipe's sections on stdin; its output is collected by a thread."""

    def __init__(self, number: int, cwd: Path, env: dict[str, str]) -> None:
        self.number = number
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group: what it leaves behind can be stopped
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True, name=f"terminal {number}").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, commands: str) -> str:
        """Run one section; fail with its output if a command fails or it takes too long."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{commands}\necho {DONE} $?\n")
        self.proc.stdin.flush()
        got: list[str] = []
        deadline = time.monotonic() + SECTION_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(  # noqa: B904 - the output is the context
                    f"terminal {self.number} took over {SECTION_TIMEOUT:g} s:\n{''.join(got)}"
                )
            if line is None:
                raise AssertionError(f"terminal {self.number}'s shell exited:\n{''.join(got)}")
            if line.startswith(DONE):
                self.output += got
                assert line.split()[1] == "0", f"terminal {self.number} failed:\n{commands}\n{''.join(got)}"
                return "".join(got)
            got.append(line)

    def stop(self) -> None:
        with_group = [signal.SIGTERM, signal.SIGKILL]
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        for sig in with_group:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture
def terminals(tmp_path: Path) -> Iterator[tuple[dict[int, Terminal], Path]]:
    venv = ROOT / ".venv"
    cwd = ROOT
    if not ((venv / "bin" / "activate").exists() and Path(sys.executable).parent == venv / "bin"):
        # Run from another virtualenv: an activate of the same effect, in a directory of its own.
        cwd = tmp_path / "clone"
        (cwd / ".venv" / "bin").mkdir(parents=True)
        (cwd / ".venv" / "bin" / "activate").write_text(f'PATH="{Path(sys.executable).parent}:$PATH"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_") and k != "VIRTUAL_ENV"}
    env.update({"COLUMNS": "80", "USER": "readme"})
    opened = {n: Terminal(n, cwd, env) for n in (1, 2, 3)}
    try:
        yield opened, tmp_path
    finally:
        for terminal in opened.values():
            terminal.stop()


def test_the_by_hand_recipe_runs_as_written(terminals: tuple[dict[int, Terminal], Path]) -> None:
    opened, tmp_path = terminals
    block = by_hand_block()
    ports = {"7400": free_port(), "7480": free_port(), "7481": free_port()}
    for old, new in ports.items():
        block = re.sub(rf"\b{old}\b", str(new), block)
    block = block.replace("/tmp/", f"{tmp_path}/")
    started = time.monotonic()
    transcript: list[str] = []
    recipe = sections(block)
    for who, commands in recipe[:-1]:
        for number in who:
            transcript.append(f"--- terminal {number}\n" + opened[number].run(commands))
    # Before the recipe stops everything: `status --watch` lists received messages as well as sent
    # ones (in a pipe it prints one whole status after another; SIGINT ends it).
    watched = opened[3].run("timeout -s INT 5 backchannel status --watch || true")
    assert "Received messages" in watched and re.search(r"^washington:in/\d+  ROUTINE", watched, re.M), (
        watched
    )
    assert "Sent messages" in watched and "Traceback" not in watched and "error:" not in watched, watched
    who, commands = recipe[-1]
    assert "kill %1" in commands and who == [1, 2, 3]
    for number in who:
        transcript.append(f"--- terminal {number}\n" + opened[number].run(commands))
    elapsed = time.monotonic() - started
    out = "\n".join(transcript)
    figure("README by-hand recipe, wall time", round(elapsed, 1), "s")

    assert "Traceback" not in out and "error:" not in out, out
    washington, moscow = "".join(opened[2].output), "".join(opened[3].output)
    ack = re.search(r"Acknowledged (moscow:in/\d+) as smith", washington)
    assert ack, washington
    flash = re.search(r"^(moscow:in/\d+)  FLASH  received$", washington, re.M)
    assert flash and flash.group(1) == ack.group(1), washington  # the ack named the FLASH
    assert re.search(r"^washington:out/\d+  FLASH  acknowledged$", moscow, re.M), moscow
    assert "by smith" in moscow and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", moscow), moscow
    assert re.search(r"^washington:in/\d+  ROUTINE  received$", moscow, re.M), moscow
    widest = max(
        len(line) for line in (washington + moscow).splitlines() if ":in/" in line or ":out/" in line
    )
    assert widest <= 80, out
    for terminal in opened.values():  # the recipe's own `kill %1` stopped what each one started
        assert terminal.run("wait; jobs -r | wc -l").strip() == "0"  # (wait: SIGTERM takes a moment)
