"""The rule of docs/THREAT_MODEL.md: every "cannot" names the test that shows it.

Each bullet under a ``**Cannot**`` heading (up to the next bold heading or section) must name
at least one test file (``tests/....py``), and every ``path::test`` the document names
anywhere must exist: the file is there and defines that test function. So a claim cannot
lose its test, and a renamed or deleted test cannot leave the document pointing nowhere.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "THREAT_MODEL.md"
TEST_PATH = re.compile(r"tests/[\w/]+\.py")
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def cannot_bullets(text: str) -> list[tuple[int, str]]:
    """(line number, whole bullet text) of every bullet under a **Cannot** heading."""
    bullets: list[tuple[int, str]] = []
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#") or line.startswith("**"):
            inside = line.strip().startswith("**Cannot**")
        elif inside and line.startswith("- "):
            bullets.append((number, line))
        elif inside and line.startswith("  ") and bullets:
            bullets[-1] = (bullets[-1][0], bullets[-1][1] + " " + line.strip())
        elif inside and line.strip():
            inside = False  # a paragraph after the list ends it
    return bullets


@cache
def functions_in(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return frozenset(
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )


def test_every_cannot_bullet_names_a_test() -> None:
    bullets = cannot_bullets(DOC.read_text(encoding="utf-8"))
    assert len(bullets) >= 40  # the parser still finds the lists
    missing = [f"line {n}: {b[:90]}" for n, b in bullets if not TEST_PATH.search(b)]
    assert not missing, "these 'cannot' bullets name no test:\n" + "\n".join(missing)


def test_every_test_the_document_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    refs = set(TEST_REF.findall(text))
    assert len(refs) >= 50
    broken = [
        f"{path}::{name}"
        for path, name in sorted(refs)
        if not (ROOT / path).is_file() or name not in functions_in(path)
    ]
    files = {p for p in TEST_PATH.findall(text) if not (ROOT / p).is_file()}
    assert not broken and not files, f"named but not found: {broken + sorted(files)}"


def test_the_parser_sees_bullets_across_wrapped_lines_and_stops_at_the_next_heading() -> None:
    sample = (
        "**Cannot**\n- one, wrapped\n  `tests/unit/x.py::test_a`.\n- two\n\n**Can**\n- not a cannot\n"
        "## 9. Next\n**Cannot**\n- three\nA paragraph.\n- not in the list\n"
    )
    assert cannot_bullets(sample) == [
        (2, "- one, wrapped `tests/unit/x.py::test_a`."),
        (4, "- two"),
        (10, "- three"),
    ]
