"""The components the middleware adds: its security schemes and its responses.

Each is added under its own name unless the document already holds an equal
one; a name the app uses for something else gets a suffix. The 429 comes
from :mod:`asgi_apikey.openapi.limits`.
"""

from __future__ import annotations

import copy
from typing import Any

from .limits import OpenAPILimits, _rate_limited

_OURS = "_asgi_apikey"  # the suffix of a name the app already uses for something else


def security_schemes(
    declared: dict[str, Any], header_name: str | None, allow_query_token: bool
) -> list[str]:
    """Our scheme names, each added to ``declared`` unless an equal one is there."""
    wanted: list[tuple[str, dict[str, str], str]] = [
        ("HTTPBearer", {"type": "http", "scheme": "bearer"}, "`Authorization: Bearer <key>`")
    ]
    if header_name:
        definition = {"type": "apiKey", "in": "header", "name": header_name}
        wanted.append(("APIKeyHeader", definition, f"`{header_name}: <key>`"))
    if allow_query_token:
        definition = {"type": "apiKey", "in": "query", "name": "access_token"}
        wanted.append(("APIKeyQuery", definition, "`?access_token=<key>` (RFC 6750 §2.3)"))
    names = []
    for base, definition, how in wanted:
        text = f"An API key, sent as {how}"
        if len(wanted) > 1:
            text += "; one method per request (two are refused with 400)"
        names.append(_free_name(declared, base, {**definition, "description": text + "."}, _same))
    return names


def response_components(
    declared: dict[str, Any],
    realm_name: str,
    live_source: bool,
    limited: list[tuple[OpenAPILimits, str]],
) -> tuple[dict[int, str], set[str]]:
    """Our response components, by status: each added unless an equal one is there.

    Also every reference an earlier application may have added, for ``_undo``:
    the components of limits or causes of 503 that no longer apply are taken off.
    """
    realm = f'Bearer realm="{realm_name}"'
    detail = {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    }

    def response(description: str, example: str, headers: dict[str, Any]) -> dict[str, Any]:
        return {
            "description": description,
            "headers": headers,
            "content": {
                "application/json": {
                    "schema": copy.deepcopy(detail),
                    "example": {"detail": example},
                }
            },
        }

    def challenge(text: str, example: str) -> dict[str, Any]:
        header = {"description": text, "schema": {"type": "string"}, "example": example}
        return {"WWW-Authenticate": header}

    wanted = {
        401: (
            "APIKeyUnauthorized",
            response(
                "No API key, or one that is not valid (RFC 6750 `invalid_token`).",
                "Invalid API key",
                challenge(
                    f'The challenge: `{realm}` without a key, with `error="invalid_token"` '
                    "for a key that is not valid.",
                    f'{realm}, error="invalid_token", error_description="The API key is not valid"',
                ),
            ),
        ),
        400: (
            "APIKeyInvalidRequest",
            response(
                "Malformed credentials (RFC 6750 `invalid_request`): an empty or "
                "malformed key, or more than one.",
                "Malformed credentials: The bearer token is empty",
                challenge(
                    'The challenge, with `error="invalid_request"`.',
                    f'{realm}, error="invalid_request", error_description="The bearer '
                    'token is empty"',
                ),
            ),
        ),
        403: (
            "APIKeyForbidden",
            response(
                "The API key lacks a scope this operation requires "
                "(RFC 6750 `insufficient_scope`).",
                "This API key lacks a required scope: admin",
                challenge(
                    'The challenge, with `error="insufficient_scope"` and the `scope` needed.',
                    f'{realm}, error="insufficient_scope", error_description="The API key '
                    'lacks a scope this path requires", scope="admin"',
                ),
            ),
        ),
    }
    # What limits and a live source add, in every form: the forms that apply now are
    # wanted, the others are taken off where an earlier application added them.
    refuses = any(found.refuses for found, _ in limited)
    retry = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
    forms: list[tuple[int, str, dict[str, Any], bool]] = [
        (429, "APIKeyRateLimited", _rate_limited(response), bool(limited))
    ]
    for causes, (text, example) in _UNAVAILABLE.items():
        body = response(text, example, {"Retry-After": retry})
        forms.append((503, "APIKeyUnavailable", body, causes == (live_source, refuses)))
    old = set()
    for status, base, body, applies in forms:
        if applies:
            wanted[status] = (base, body)
            continue
        for name, present in list(declared.items()):
            if name.startswith(base) and present == body:
                del declared[name]
                old.add(f"#/components/responses/{name}")
    refs = {
        status: f"#/components/responses/{_free_name(declared, base, body, _equal)}"
        for status, (base, body) in wanted.items()
    }
    return refs, old | set(refs.values())


#: The 503 response's description and example, by its causes: (a live key source, a
#: shared limiter that refuses when it cannot decide).
_UNAVAILABLE = {
    (True, False): (
        "The key store cannot be trusted right now (the key may be valid): retry.",
        "The key store is unavailable",
    ),
    (False, True): (
        "The shared rate limiter cannot decide right now: retry.",
        "The rate limiter is unavailable",
    ),
    (True, True): (
        "The key store cannot be trusted right now (the key may be valid), or the shared "
        "rate limiter cannot decide: retry.",
        "The key store is unavailable",
    ),
}


def _free_name(declared: dict[str, Any], base: str, definition: Any, same: Any) -> str:
    """``base`` unless the app uses it for something else; the definition is added if new."""
    for number in range(1, 100):
        name = base if number == 1 else base + _OURS + ("" if number == 2 else str(number))
        present = declared.get(name)
        if present is None:
            declared[name] = definition
            return name
        if same(present, definition):
            return name
    raise ValueError(f"the document names too many components {base}{_OURS}...")


def _same(present: object, wanted: dict[str, Any]) -> bool:
    """Two security schemes that read the same credentials (descriptions aside)."""
    if not isinstance(present, dict) or present.get("type") != wanted["type"]:
        return False
    if wanted["type"] == "http":
        return str(present.get("scheme", "")).lower() == str(wanted["scheme"])
    if present.get("in") != wanted["in"]:
        return False
    name, expected = str(present.get("name", "")), str(wanted["name"])
    if wanted["in"] == "header":  # header names are case-insensitive, query names are not
        return name.lower() == expected.lower()
    return name == expected


def _equal(present: object, wanted: object) -> bool:
    return bool(present == wanted)
