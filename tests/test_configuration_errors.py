"""No configuration error quotes a value that could be a key (second review of issue 15).

A key pasted into the wrong setting must not reach the error, which is logged
and shown: every setting of the middleware and the rule table is tried with
keys of the lengths staging and production accept, and a little more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, ConfigurationError
from asgi_apikey.errors import not_shown_unless_word
from tests.asgi import Recorder, chain

PASTED = ["sk-live-0123456789abcdef", "0123456789abcdef", "Abcdefghijklmnop", "sk-live-01234567 "]


def middleware(**settings: Any) -> APIKeyMiddleware:
    return APIKeyMiddleware(Recorder(), keys=[], **settings)


# Each builds something with `key` where a setting of another kind belongs.
BUILDERS: dict[str, Callable[[str], object]] = {
    "allow_query_token": lambda key: middleware(allow_query_token=key),
    "allow_cors_preflight": lambda key: middleware(allow_cors_preflight=key),
    "max_token_length": lambda key: middleware(max_token_length=key),
    "max_path_length": lambda key: middleware(max_path_length=key),
    "header_name": lambda key: middleware(header_name=key + " :"),
    "realm": lambda key: middleware(realm=key + '"'),
    "default": lambda key: middleware(default=key),
    "rule scopes": lambda key: middleware(protected={"/a": [key + " "]}),
    "key scopes": lambda key: APIKey("sk-other-0123456789abcdef", scopes=[key + "\\"]),
    "rule path": lambda key: middleware(public=[key]),
    "security header name": lambda key: middleware(security_headers={key + " x": "1"}),
    "failure_log_limit": lambda key: APIKeyAuth(keys=[], failure_log_limit=key),  # type: ignore[arg-type]
    "failure_log_per_client": lambda key: APIKeyAuth(
        keys=[],
        failure_log_per_client=key,  # type: ignore[arg-type]
    ),
    "user_tracking": lambda key: APIKeyAuth(keys=[], user_tracking=key),  # type: ignore[arg-type]
    "mode": lambda key: APIKeyAuth(keys=[], mode=key),
    "environment": lambda key: APIKeyAuth(keys=[], environment=key),
}


@pytest.mark.parametrize("key", PASTED)
@pytest.mark.parametrize("setting", BUILDERS)
def test_a_key_pasted_into_any_setting_is_never_quoted(setting: str, key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        BUILDERS[setting](key)
    for error in chain(caught.value):
        shown = str(error) + repr(error) + repr(getattr(error, "context", ""))
        assert key.strip() not in shown
        assert key.strip()[:12] not in shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("prod", ", not 'prod'"),
        ("maybe-not", ", not 'maybe-not'"),
        ("sk-live-0123456789abcdef", ""),
        ("abcdefghijklm", ""),  # 13 letters: could be part of a key
        ("", ""),
        (7, ", not 7"),
        (None, ", not None"),
        (["admin"], ", not a list"),
        ({"k": "v"}, ", not a dict"),
    ],
)
def test_only_short_words_and_numbers_are_quoted(value: Any, shown: str) -> None:
    assert not_shown_unless_word(value) == shown
