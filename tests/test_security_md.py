"""SECURITY.md names the tests behind each guarantee: every name must exist.

A renamed or deleted test would otherwise leave a guarantee that nothing backs.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECURITY = ROOT / "SECURITY.md"
# `tests/test_x.py`, `tests/test_x.py::test_name`, and `::test_name` after one of them.
_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::([\w*]+))?`")


def references(text: str) -> list[tuple[str, str | None]]:
    """(file, test name pattern or None) for each backtick reference, in order."""
    found: list[tuple[str, str | None]] = []
    current: str | None = None
    for match in _REFERENCE.finditer(text):
        path, name = match.groups()
        if path is None and name is None:
            continue
        if path is not None:
            current = path
        if current is None:
            raise AssertionError(f"{match.group()} names a test before naming its file")
        found.append((current, name))
    return found


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_test_security_md_names_exists() -> None:
    found = references(SECURITY.read_text())
    assert len(found) >= 10  # the table is there, and read
    for path, pattern in found:
        file = ROOT / path
        assert file.is_file(), f"SECURITY.md names {path}, which does not exist"
        if pattern is not None:
            names = functions_in(file)
            assert fnmatch.filter(names, pattern), (
                f"SECURITY.md names {path}::{pattern}: no such test"
            )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("`tests/test_a.py`", [("tests/test_a.py", None)]),
        (
            "`tests/test_a.py::test_x`, `::test_y*`",
            [("tests/test_a.py", "test_x"), ("tests/test_a.py", "test_y*")],
        ),
        ("`benchmarks/timing.py` and `hmac.compare_digest`", []),
    ],
)
def test_references_are_read_with_their_file(
    text: str, expected: list[tuple[str, str | None]]
) -> None:
    assert references(text) == expected


def test_a_test_name_without_a_file_is_an_error() -> None:
    with pytest.raises(AssertionError, match="before naming its file"):
        references("`::test_orphan`")
