from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# A fixed budget for CI (selected by HYPOTHESIS_PROFILE=ci in .ci/run) and a
# larger one for hunting locally (HYPOTHESIS_PROFILE=thorough).
settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile(
    "thorough", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# Every variable asgi_apikey reads. Tests start from an empty configuration so
# the machine's environment cannot change their outcome; tests that need one
# set it with monkeypatch.
AUTH_VARIABLES = (
    "API_KEY",
    "ADDITIONAL_API_KEYS",
    "API_KEYS_FILE",
    "AUTH_MODE",
    "ENABLE_USER_TRACKING",
    "ENABLE_REQUEST_LOGGING",
    "ENVIRONMENT",
)


@pytest.fixture(autouse=True)
def _clean_auth_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
