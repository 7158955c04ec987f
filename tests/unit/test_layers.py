"""The pure core does no I/O: checked in the running interpreter and in the source text."""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import backchannel.proto

PROTO_DIR = Path(backchannel.proto.__file__).parent
FORBIDDEN_LOADED = ("asyncio", "socket", "sqlite3", "websockets")
FORBIDDEN_IMPORTS = ("os", "time", "random", "socket", "asyncio", "sqlite3")
IMPORT_RE = re.compile(
    r"^\s*(?:import\s+(?P<plain>[\w.]+(?:\s*,\s*[\w.]+)*)|from\s+(?P<from>[\w.]+)\s+import\b)",
    re.MULTILINE,
)


def proto_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(PROTO_DIR)], prefix="backchannel.proto."))


def test_the_proto_package_has_the_modules_we_check() -> None:
    names = proto_modules()
    for expected in ("envelope", "frames", "line", "session", "invitation", "payloads", "encoding"):
        assert f"backchannel.proto.{expected}" in names


def test_importing_the_whole_core_loads_no_io_module() -> None:
    script = (
        "import importlib, json, sys\n"
        f"for name in {proto_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN_LOADED!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_the_check_itself_would_notice_an_io_import() -> None:
    script = "import json, sys, sqlite3\nprint(json.dumps('sqlite3' in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) is True


def imported_roots(source: str) -> set[str]:
    roots: set[str] = set()
    for match in IMPORT_RE.finditer(source):
        if match.group("plain"):
            roots.update(part.strip().split(".")[0] for part in match.group("plain").split(","))
        else:
            roots.add(match.group("from").split(".")[0])
    return roots


def test_the_import_scanner_finds_every_import_form() -> None:
    sample = "import os\nimport json, time\nfrom random import choice\n    import socket\nfrom x.y import z\n"
    assert imported_roots(sample) == {"os", "json", "time", "random", "socket", "x"}


def test_no_core_source_file_imports_an_io_module() -> None:
    offenders = {}
    files = sorted(PROTO_DIR.rglob("*.py"))
    assert files
    for path in files:
        bad = imported_roots(path.read_text(encoding="utf-8")) & set(FORBIDDEN_IMPORTS)
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}
