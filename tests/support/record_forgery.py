"""Forgeries of the record made with the project's own tools, and the arbiter's CLI.

The forger's toolkit is tools/gen_record_tamper.py (loaded here as a module): it seals entries
with ``proto.record.encode_entry``, seals exports with ``proto.export.seal_export`` and writes
identity files with ``proto.identity.identity_document``, holding only the keys of the station
it speaks for. ``arbiter`` runs the real ``backchannel transcript verify-export`` in a
subprocess on a machine that never saw the line (no station, no home, no passphrase).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

TOOL = Path(__file__).resolve().parents[2] / "tools" / "gen_record_tamper.py"


@cache
def toolkit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_record_tamper", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def write(directory: Path, name: str, doc: Any) -> Path:
    path = directory / name
    path.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    return path


def arbiter(
    directory: Path, export: Path, *key_files: Path, as_json: bool = False
) -> subprocess.CompletedProcess[str]:
    """``backchannel transcript verify-export`` as an arbiter runs it, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env["BACKCHANNEL_HOME"] = str(directory / "nowhere")
    env["COLUMNS"] = "250"
    args = [sys.executable, "-m", "backchannel", "transcript", "verify-export", str(export)]
    for key in key_files:
        args += ["--keys", str(key)]
    if as_json:
        args.append("--json")
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=directory, timeout=60)
