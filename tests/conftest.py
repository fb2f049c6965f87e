from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import HealthCheck, settings

from tests.asgi import AUTH_VARIABLES

# A fixed budget for CI (selected by HYPOTHESIS_PROFILE=ci in .ci/run) and a
# larger one for hunting locally (HYPOTHESIS_PROFILE=thorough).
settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile(
    "thorough", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The benchmark tests draw a chart: matplotlib keeps its font cache and config in
# a directory of the run's own (also for the servers and commands tests start),
# never in the home directory.
_MATPLOTLIB_HOME = tempfile.mkdtemp(prefix="asgi-apikey-matplotlib-")
os.environ["MPLCONFIGDIR"] = _MATPLOTLIB_HOME


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_MATPLOTLIB_HOME, ignore_errors=True)


# Tests start from an empty configuration so the machine's environment cannot
# change their outcome; tests that need one set it with monkeypatch.
@pytest.fixture(autouse=True)
def _clean_auth_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def uncached_structlog(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that run a benchmark: its structlog configuration, uncached, then undone.

    The benchmarks configure structlog to cache loggers on first use, which no
    reset undoes: the package's logger would keep that pipeline for every later
    test (and their captures would see nothing). Here it is configured the same
    way, uncached, and reset afterwards.
    """
    configure = structlog.configure

    def uncached(**settings: object) -> None:
        configure(**{**settings, "cache_logger_on_first_use": False})  # type: ignore[arg-type]

    monkeypatch.setattr(structlog, "configure", uncached)
    yield
    structlog.reset_defaults()
