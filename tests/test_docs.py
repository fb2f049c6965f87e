"""The README and the docs keep working: every Python block in them runs, and the quick start
serves under a real uvicorn and refuses to start when it is misconfigured.

The blocks of one page run in order in one namespace (a page builds on its
earlier blocks), in a temporary directory, with the environment restored after.
A block preceded by ``<!-- not-run: <reason> -->`` is not run; the reason is
required. ``--8<-- "path[:start[:end]]"`` lines (pymdownx.snippets) are
replaced by the lines they include, as the site build does.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
QUICKSTART = ROOT / "examples" / "quickstart.py"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
HOST = "127.0.0.1"

_NOT_RUN = re.compile(r"<!-- not-run: (?P<reason>\S.*?) -->")
_SNIPPET = re.compile(r'^--8<-- "(?P<path>[^":]+)(?::(?P<start>\d*))?(?::(?P<end>\d*))?"$')


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    not_run: str | None  # the reason, when marked


def include(line: str) -> str:
    """A snippet line's text, as pymdownx.snippets includes it (1-based inclusive lines)."""
    match = _SNIPPET.match(line.strip())
    if match is None:
        return line
    lines = (ROOT / match["path"]).read_text().splitlines(keepends=True)
    start = int(match["start"] or 1)
    end = int(match["end"] or len(lines))
    return "".join(lines[start - 1 : end])


def blocks(page: Path) -> list[Block]:
    """The ```python blocks of a page, in order."""
    found: list[Block] = []
    lines = page.read_text().splitlines(keepends=True)
    index = 0
    while index < len(lines):
        if lines[index].rstrip() != "```python":
            index += 1
            continue
        opening = index
        body: list[str] = []
        index += 1
        while lines[index].rstrip() != "```":
            body.append(include(lines[index]))
            index += 1
        before = "".join(lines[:opening]).rstrip().rsplit("\n", 1)[-1]
        mark = _NOT_RUN.fullmatch(before.strip())
        if "not-run" in before:
            assert mark, f"{page.name}:{opening}: a not-run mark must give its reason: {before!r}"
        found.append(Block(page, opening + 1, "".join(body), mark["reason"] if mark else None))
        index += 1
    return found


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A temporary working directory, and the environment as it was afterwards."""
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("sandbox")
@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=_page_id)
def test_python_blocks_run(page: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for block in blocks(page):
        if block.not_run:
            continue
        where = f"{_page_id(page)}:{block.line}"
        try:
            exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - our own docs
        except Exception as error:
            raise AssertionError(f"the block at {where} raised {error!r}") from error


def test_few_blocks_are_not_run() -> None:
    every = [block for page in PAGES for block in blocks(page)]
    skipped = [f"{_page_id(b.page)}:{b.line}" for b in every if b.not_run]
    assert len(every) >= 10
    assert len(skipped) <= len(every) // 4, skipped


def quickstart_code() -> str:
    """examples/quickstart.py without its docstring: the code the README shows."""
    text = QUICKSTART.read_text()
    docstring = ast.get_docstring(ast.parse(text), clean=False)
    assert docstring is not None
    return text.split(f'"""{docstring}"""', 1)[1].lstrip("\n")


def test_readme_and_docs_show_the_quickstart_example() -> None:
    code = quickstart_code()
    assert code in [block.code for block in blocks(README)]
    assert code in [block.code for block in blocks(DOCS / "index.md")]


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 200
    assert "python3 dev.py demo" in text
    assert "python3 dev.py test" in text


# The quick start as a user runs it: main.py in a directory, `uvicorn main:app`.


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _environment(**variables: str) -> dict[str, str]:
    from tests.asgi import AUTH_VARIABLES

    names = {*AUTH_VARIABLES, *(name.lower() for name in AUTH_VARIABLES)}
    env = {name: value for name, value in os.environ.items() if name not in names}
    return {**env, "NO_PROXY": "*", **variables}


def _uvicorn(directory: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "main:app", "--host", HOST, "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(server: subprocess.Popen[str]) -> tuple[str, str]:
    if server.poll() is None:
        server.terminate()
    try:
        return server.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.communicate()


@pytest.fixture
def main_py(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(quickstart_code())
    return tmp_path


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("variables", "edit", "message"),
    [
        pytest.param(
            {"API_KEY": "sk-short", "ENVIRONMENT": "production"},
            None,
            "API_KEY",
            id="short-key-in-production",
        ),
        pytest.param(
            {"API_KEY": "sk-" + "x" * 40, "AUTH_MODE": "fancy"},
            None,
            "AUTH_MODE must be 'simple' or 'advanced'",
            id="bad-variable",
        ),
        pytest.param(
            {"API_KEY": "sk-" + "x" * 40},
            ('public=["/health",', 'public=["/", "/health",'),
            "ConfigurationError",
            id="bad-rule",
        ),
    ],
)
def test_quickstart_refuses_to_start_when_misconfigured(
    main_py: Path, variables: dict[str, str], edit: tuple[str, str] | None, message: str
) -> None:
    if edit:
        source = main_py / "main.py"
        assert edit[0] in source.read_text()
        source.write_text(source.read_text().replace(*edit))
    server = _uvicorn(main_py, _free_port(), _environment(**variables))
    try:
        server.wait(timeout=30)
    finally:
        _, stderr = _stop(server)
    assert server.returncode != 0
    assert "ConfigurationError" in stderr
    assert message in stderr
    assert "Uvicorn running" not in stderr


def _first_answer(server: subprocess.Popen[str], client: httpx2.Client) -> httpx2.Response:
    """``GET /health`` once uvicorn answers (within 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        assert server.poll() is None, "uvicorn stopped before it answered"
        try:
            return client.get("/health")
        except httpx2.TransportError:
            assert time.monotonic() < deadline, "uvicorn did not answer in 20 s"
            time.sleep(0.1)


@pytest.mark.timeout(60)
def test_quickstart_serves_under_uvicorn(main_py: Path) -> None:
    key = "sk-" + secrets.token_urlsafe(32)
    port = _free_port()
    server = _uvicorn(main_py, port, _environment(API_KEY=key, ENVIRONMENT="production"))
    base = f"http://{HOST}:{port}"
    try:
        with httpx2.Client(base_url=base, trust_env=False, timeout=5) as client:
            health = _first_answer(server, client)
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}
            # The README's curl line.
            hello = client.get("/hello", headers={"Authorization": f"Bearer {key}"})
            assert hello.status_code == 200
            assert hello.json()["hello"].startswith("key-")
            assert client.get("/hello").status_code == 401
            assert client.get("/docs").status_code == 200
            assert client.get("/openapi.json").status_code == 200
    finally:
        _, stderr = _stop(server)
    assert key not in stderr


@pytest.mark.timeout(60)
def test_quickstart_without_keys_serves_only_this_machine(main_py: Path) -> None:
    """No API_KEY, no ENVIRONMENT: development mode for local clients only."""
    port = _free_port()
    server = _uvicorn(main_py, port, _environment())
    base = f"http://{HOST}:{port}"
    try:
        with httpx2.Client(base_url=base, trust_env=False, timeout=5) as client:
            assert _first_answer(server, client).status_code == 200
            # A local client needs no key: the endpoint gets the anonymous context.
            hello = client.get("/hello")
            assert hello.status_code == 200
            assert hello.json() == {"hello": None}
            # Another host name, or a relay in between: refused, and told what to set.
            for headers in [{"Host": "example.com"}, {"X-Forwarded-For": "203.0.113.7"}]:
                refused = client.get("/hello", headers=headers)
                assert refused.status_code == 401, headers
                detail = refused.json()["detail"]
                assert "Development mode serves only this machine" in detail
                assert "set API_KEY" in detail
                assert "ENVIRONMENT=development" in detail
    finally:
        stdout, stderr = _stop(server)
    assert "development_mode" in stdout + stderr  # the warning at start-up
