"""MkDocs hook: put the files kept outside docs/ into the site, where their links expect them.

SECURITY.md and CHANGELOG.md become the pages ``security.md`` and
``changelog.md``, and the benchmark results (pages and chart) go under
``benchmarks/results/``: so the links SECURITY.md and the performance page
make to ``benchmarks/results/...`` resolve in the site as in the repository,
and ``--strict`` checks them. Each file stays in one place, read at build time.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = "benchmarks/results"


def outside_files() -> dict[str, Path]:
    """The site path of each file taken from outside docs/, and where it is."""
    files = {"security.md": ROOT / "SECURITY.md", "changelog.md": ROOT / "CHANGELOG.md"}
    for path in sorted((ROOT / RESULTS).iterdir()):
        if path.suffix in (".md", ".png"):
            files[f"{RESULTS}/{path.name}"] = path
    return files


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, path in outside_files().items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
