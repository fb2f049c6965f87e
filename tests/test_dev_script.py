"""``dev.py``: a SIGTERM to it stops the command it runs too (``python3 dev.py demo``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# dev.py's _run with a child that says its pid and sleeps; the child ignores
# SIGTERM when asked to, as a server stuck in shutdown would.
_PARENT = """
import sys
sys.path.insert(0, sys.argv[1])
import dev
dev._GRACE = float(sys.argv[2])
child = (
    "import os, signal, sys, time\\n"
    + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if sys.argv[3] == "stubborn" else "")
    + "print(os.getpid(), flush=True)\\n"
    + "time.sleep(60)\\n"
)
sys.exit(dev._run(sys.executable, "-c", child))
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a process is POSIX")


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("child", "grace"), [("willing", 10.0), ("stubborn", 0.5)], ids=["stops", "ignores-sigterm"]
)
@pytest.mark.timeout(60)
def test_sigterm_to_dev_py_stops_its_child(child: str, grace: float) -> None:
    # Its own process group, so a failure can stop the child too (see finally).
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(ROOT), str(grace), child],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pid: int | None = None
    stopped = False
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=15) == 128 + signal.SIGTERM
        assert _gone(pid, within=5), f"the child {pid} is still running"
        stopped = True
    finally:
        if not stopped:  # leave no child running: by its pid, and by the group
            for kill, target in ((os.killpg, parent.pid), (os.kill, pid)):
                if target is not None:
                    with contextlib.suppress(ProcessLookupError):
                        kill(target, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
