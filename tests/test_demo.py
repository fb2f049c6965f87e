"""The demo command: a real server on 127.0.0.1 answering 200, 401, 400 and 403."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx2
import pytest

from asgi_apikey.__main__ import main
from asgi_apikey.demo import _bind, build_app, instructions, new_key, serve


def test_new_key_is_random_and_prefixed() -> None:
    first, second = new_key("sk-x-"), new_key("sk-x-")
    assert first != second
    assert first.startswith("sk-x-")
    assert len(first) >= 16 + len("sk-x-")


def test_instructions_show_each_outcome() -> None:
    text = instructions("http://127.0.0.1:1", "sk-admin-a", "sk-read-b")
    for status in ("200", "401", "400", "403"):
        assert re.search(rf"^  {status}  curl ", text, re.MULTILINE), status


def test_cli_help_lists_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_cli_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2


def _requests(text: str) -> list[tuple[int, str, dict[str, str]]]:
    found = []
    pattern = r"^  (\d{3})  curl -i (\S+)(?: -H '([^:]+): ([^']+)')?$"
    for status, url, name, value in re.findall(pattern, text, re.MULTILINE):
        found.append((int(status), url, {name: value} if name else {}))
    return found


def test_demo_serves_what_it_prints_and_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-m", "asgi_apikey", "demo", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as process:
        try:
            _check_demo(process)
        finally:
            if process.poll() is None:
                process.kill()


def _check_demo(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "curl" in line and "Bearer sk-admin-" in line and "/v1/admin" in line:
            break
    text = "".join(lines)
    assert "http://127.0.0.1:" in text, text
    requests = _requests(text)
    assert {status for status, _, _ in requests} == {200, 400, 401, 403}
    assert all(url.startswith("http://127.0.0.1:") for _, url, _ in requests)
    with httpx2.Client(timeout=5) as client:
        for status, url, headers in requests:
            response = _get_when_ready(client, url, headers)
            assert response.status_code == status, (url, headers)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0


def _get_when_ready(client: httpx2.Client, url: str, headers: dict[str, str]) -> httpx2.Response:
    # The socket is bound before the banner is printed; the app may still be starting.
    for _ in range(50):
        try:
            return client.get(url, headers=headers)
        except httpx2.TransportError:
            time.sleep(0.1)
    return client.get(url, headers=headers)


def test_demo_app_routes() -> None:
    from starlette.testclient import TestClient

    client = TestClient(build_app("sk-admin-0123456789abcdef", "sk-read-0123456789abcdef"))
    assert client.get("/health").json() == {"status": "ok"}
    hello = client.get("/v1/hello", headers={"Authorization": "Bearer sk-read-0123456789abcdef"})
    assert hello.json() == {"hello": "demo-reader", "scopes": ["authenticated", "read"]}


def test_demo_without_uvicorn_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert serve("127.0.0.1", 0) == 2
    assert "pip install 'asgi_apikey[demo]'" in capsys.readouterr().out


def test_busy_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        bound = _bind("127.0.0.1", busy)
        try:
            assert bound.getsockname()[1] not in (busy, 0)
        finally:
            bound.close()
