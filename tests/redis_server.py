"""A real redis-server for tests: started on 127.0.0.1 on a free port, always stopped.

The server keeps its data in an append-only file in the test's directory, so a
test can stop it and start it again on the same port with the keys still
there, as a restarted production Redis would have them. Where redis-server is
not installed the tests that need it are skipped with the reason, unless
``ASGI_APIKEY_REQUIRE_REDIS=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server_binary", "running_redis"]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """The path of redis-server, or skip (fail under ``ASGI_APIKEY_REQUIRE_REDIS=1``)."""
    found = shutil.which("redis-server")
    if found is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("ASGI_APIKEY_REQUIRE_REDIS") == "1":
            pytest.fail(f"{reason}, and ASGI_APIKEY_REQUIRE_REDIS=1 requires it")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on 127.0.0.1; ``stop()`` and ``start()`` keep port and data."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.password = password
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    def start(self) -> None:
        command = [
            self.binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in time")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                reply = connection.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def kill(self) -> None:
        """Stop it abruptly (SIGKILL), as a crash or a lost host would."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def running_redis(directory: Path, *, password: str | None = None) -> Iterator[RedisServer]:
    server = RedisServer(directory, password=password)
    for attempt in range(3):  # the free port may be taken between probe and bind
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
            server.port = _free_port()
    try:
        yield server
    finally:
        server.stop()
