"""The hostile-path benchmark runs, and every shape gets the answer the rules give it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import paths


def test_the_hostile_path_benchmark_runs_and_refuses_every_protected_shape(
    tmp_path: Path,
) -> None:
    assert paths.main(["--smoke", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "paths.json").read_text())
    assert len(rows) == 2 * len(paths.SHAPES)
    for row in rows:
        if row["path"] == "under a public rule":
            assert row["status"] == 200
        elif row["path"].startswith("baseline"):
            assert row["status"] == 401
        elif row["path"].startswith("8 KiB"):
            assert row["status"] in (400, 401)
        else:
            assert row["status"] == 414, row
    assert "| under a public rule |" in (tmp_path / "paths.md").read_text()
