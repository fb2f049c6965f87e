"""The wheel holds the whole package: every module and subpackage, and ``py.typed``.

An editable install hides a package list that leaves subpackages out; this
builds the wheel as a release would (no network, no build isolation) and
compares its files with the package's modules in the source tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_module_and_py_typed(tmp_path: Path) -> None:
    # From a copy of what a clean checkout holds: a build/ left in the tree would hide a gap.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "asgi_apikey", source / "asgi_apikey", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run(
        [*pip, "--wheel-dir", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("asgi_apikey-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "asgi_apikey"
    expected = {
        path.relative_to(ROOT).as_posix()
        for path in package.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert {"asgi_apikey/ratelimit/__init__.py", "asgi_apikey/redis_store/__init__.py"} <= expected
    assert expected <= names, sorted(expected - names)
    assert "asgi_apikey/py.typed" in names
