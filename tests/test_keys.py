"""Keys and the authenticator: APIKey validation, APIKeyAuth lookup, rotation, leaks."""

from __future__ import annotations

import hashlib
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyUser,
    AuthContext,
    ConfigurationError,
    KeyChanges,
)
from asgi_apikey.context import FrozenMapping
from asgi_apikey.keys import Accepted, KeyEntry, Rejected
from tests.asgi import CANARY, OTHER_KEY, error_texts, plain_digest

THIRD_KEY = "sk-third-9z8y7x6w5v4u3t2s1r0q"


def assert_no_secret(error: BaseException, secret: str = CANARY) -> None:
    """No trace of ``secret`` in the error, its context or anything chained to it."""
    needles = {secret, secret.strip(), CANARY}
    for name, text in error_texts(error):
        for needle in needles:
            assert needle not in text, f"secret leaked by {name}: {text}"


def hide(value: object) -> str:
    """A test id that never spells the canary (ids end up in reports and logs)."""
    text = ascii(value)
    return "canary-variant" if CANARY[3:-1].lower() in text.lower() else text


def raises_config(action: Callable[[], object], match: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError, match=match) as info:
        action()
    return info.value


# --------------------------------------------------------------------------- APIKey


def test_digest_is_sha256_of_utf8_key() -> None:
    key = APIKey(CANARY)
    assert key.digest == plain_digest(CANARY)
    assert key.digest.startswith("sha256:")
    assert len(key.digest) == len("sha256:") + 64


def test_exactly_one_of_secret_or_digest() -> None:
    raises_config(lambda: APIKey(), "exactly one of secret=")
    error = raises_config(
        lambda: APIKey(CANARY, digest=plain_digest(CANARY)), "exactly one of secret="
    )
    assert_no_secret(error)
    assert plain_digest(CANARY)[7:] not in str(error)


def test_digest_form_accepts_both_cases_and_names_the_same_key() -> None:
    hex_digest = hashlib.sha256(CANARY.encode()).hexdigest()
    plain = APIKey(CANARY)
    lower = APIKey(digest="sha256:" + hex_digest.lower())
    upper = APIKey(digest="sha256:" + hex_digest.upper())
    assert plain.key_id == lower.key_id == upper.key_id
    assert lower.digest == upper.digest == plain.digest  # normalised to lower case
    assert plain == lower == upper


def test_key_id_is_the_name_when_given() -> None:
    assert APIKey(CANARY, name="billing").key_id == "billing"
    assert APIKey(CANARY, name="billing").name == "billing"
    assert APIKey(CANARY).name is None


def test_fingerprint_key_id_is_stable_distinct_and_not_a_slice_of_the_digest() -> None:
    key_id = APIKey(CANARY).key_id
    assert key_id.startswith("key-")
    assert APIKey(CANARY).key_id == key_id
    assert APIKey(digest=plain_digest(CANARY)).key_id == key_id
    assert APIKey(OTHER_KEY).key_id != key_id
    hex_digest = hashlib.sha256(CANARY.encode()).hexdigest()
    tail = key_id.removeprefix("key-")
    assert len(tail) >= 8
    assert tail not in hex_digest
    assert not hex_digest.startswith(tail[:8])
    assert CANARY not in key_id


def test_fingerprints_differ_across_many_keys() -> None:
    ids = {APIKey(f"sk-many-{i:08d}-abcdef").key_id for i in range(2000)}
    assert len(ids) == 2000


def test_repr_shows_key_id_and_scopes_but_no_secret_nor_digest() -> None:
    named = APIKey(CANARY, name="billing", scopes={"write", "read"})
    assert repr(named) == "APIKey(key_id='billing', scopes=['read', 'write'])"
    unnamed = APIKey(CANARY, scopes=["read"])
    hex_digest = hashlib.sha256(CANARY.encode()).hexdigest()
    for key in (named, unnamed, APIKey(digest=plain_digest(CANARY))):
        text = repr(key) + str(key)
        assert CANARY not in text
        assert hex_digest[:16] not in text
        assert hex_digest[-16:] not in text
        assert key.key_id in text


def test_apikey_is_immutable() -> None:
    key = APIKey(CANARY, name="billing", scopes={"read"})
    for attribute, value in [
        ("name", "other"),
        ("key_id", "other"),
        ("scopes", frozenset({"admin"})),
        ("metadata", {}),
        ("_digest", b"x" * 32),
        ("brand_new", 1),
    ]:
        with pytest.raises(AttributeError):
            setattr(key, attribute, value)
    assert key.key_id == "billing"
    assert key.scopes == frozenset({"read"})
    assert key.digest == plain_digest(CANARY)


def test_apikey_attributes_cannot_be_deleted() -> None:
    key = APIKey(CANARY, name="billing", scopes={"read"})
    for attribute in ("name", "key_id", "scopes", "metadata"):
        with pytest.raises(AttributeError):
            delattr(key, attribute)
    assert key.scopes == frozenset({"read"})


def test_scopes_are_a_frozenset_copy() -> None:
    given_scopes = {"read", "write"}
    key = APIKey(CANARY, scopes=given_scopes)
    given_scopes.add("admin")
    assert isinstance(key.scopes, frozenset)
    assert key.scopes == frozenset({"read", "write"})
    assert APIKey(CANARY, scopes=["read", "read"]).scopes == frozenset({"read"})
    assert APIKey(CANARY).scopes == frozenset()


def test_metadata_is_read_only_and_copied() -> None:
    source: dict[str, Any] = {"team": "billing"}
    key = APIKey(CANARY, metadata=source)
    source["team"] = "changed"
    source["extra"] = 1
    assert isinstance(key.metadata, FrozenMapping)
    assert dict(key.metadata) == {"team": "billing"}
    with pytest.raises(TypeError):
        key.metadata["team"] = "x"
    assert dict(APIKey(CANARY).metadata) == {}


def test_equality_and_hash() -> None:
    a = APIKey(CANARY, name="n", scopes={"read"}, metadata={"x": 1})
    b = APIKey(digest=plain_digest(CANARY), name="n", scopes=["read"], metadata={"x": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != APIKey(OTHER_KEY, name="n", scopes={"read"}, metadata={"x": 1})
    assert a != APIKey(CANARY, name="m", scopes={"read"}, metadata={"x": 1})
    assert a != APIKey(CANARY, name="n", scopes={"write"}, metadata={"x": 1})
    assert a != APIKey(CANARY, name="n", scopes={"read"}, metadata={"x": 2})
    assert a != CANARY
    assert APIKey(CANARY) == APIKey(CANARY)
    assert APIKey(CANARY) != APIKey(OTHER_KEY)


# ------------------------------------------------------------ APIKey validation


def canary_variants() -> list[tuple[str, str, str]]:
    """(id, bad secret built from the canary, expected message fragment)."""
    return [
        ("leading-space", " " + CANARY, "leading or trailing whitespace"),
        ("trailing-newline", CANARY + "\n", "leading or trailing whitespace"),
        ("trailing-tab", CANARY + "\t", "leading or trailing whitespace"),
        ("looks-like-digest", "sha256:" + CANARY, r"looks like a digest"),
        ("inner-space", CANARY[:10] + " " + CANARY[10:], "characters a Bearer token cannot"),
        ("bang", CANARY + "!", "characters a Bearer token cannot"),
        ("non-ascii", CANARY + "é", "characters a Bearer token cannot"),
        ("inner-equals", CANARY[:10] + "=" + CANARY[10:], "characters a Bearer token cannot"),
        ("colon", CANARY + ":x", "characters a Bearer token cannot"),
        ("nul", CANARY[:5] + "\x00" + CANARY[5:], "characters a Bearer token cannot"),
        ("too-long", CANARY + "a" * 4096, "longer than 4096 bytes"),
        ("lone-surrogate", CANARY + "\ud800", "API key"),
    ]


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [pytest.param(s, f, id=i) for i, s, f in canary_variants()],
)
def test_bad_secret_is_a_specific_error_without_the_secret(secret: str, fragment: str) -> None:
    error = raises_config(lambda: APIKey(secret, name="billing"), fragment)
    assert_no_secret(error, secret)
    assert error.__cause__ is None


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [pytest.param(s, f, id=i) for i, s, f in canary_variants()],
)
def test_bad_secret_in_a_key_list_names_the_index_not_the_secret(
    secret: str, fragment: str
) -> None:
    error = raises_config(lambda: APIKeyAuth(keys=[OTHER_KEY, secret]), fragment)
    assert "keys[1]" in str(error)
    assert error.context.get("where") == "keys[1]"
    assert_no_secret(error, secret)
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def test_empty_secret() -> None:
    raises_config(lambda: APIKey(""), "empty")
    error = raises_config(lambda: APIKeyAuth(keys=[""]), r"keys\[0\].*empty")
    assert error.__cause__ is None


@pytest.mark.parametrize(
    "secret", [CANARY.encode(), 42, ["x"], bytearray(CANARY.encode())], ids=hide
)
def test_non_str_secret(secret: object) -> None:
    error = raises_config(lambda: APIKey(secret), "must be a str")  # type: ignore[arg-type]
    assert type(secret).__name__ in str(error)
    assert_no_secret(error)


def test_secret_length_limit_is_4096_utf8_bytes() -> None:
    exact = CANARY + "a" * (4096 - len(CANARY))
    assert APIKeyAuth(keys=[exact]).verify(exact) is not None
    error = raises_config(lambda: APIKey(exact + "a"), "longer than 4096 bytes")
    assert_no_secret(error, exact + "a")


def test_b64token_shapes_that_are_accepted() -> None:
    for secret in (CANARY + "==", "A-._~+/0123456789zZ", CANARY + "="):
        assert APIKeyAuth(keys=[secret]).verify(secret) is not None


@pytest.mark.parametrize(
    "digest",
    [
        "sha1:" + hashlib.sha1(CANARY.encode(), usedforsecurity=False).hexdigest(),
        "sha256:" + hashlib.sha256(CANARY.encode()).hexdigest()[:63],
        "sha256:" + hashlib.sha256(CANARY.encode()).hexdigest() + "0",
        "sha256:" + "g" * 64,
        "SHA256:" + hashlib.sha256(CANARY.encode()).hexdigest(),
        "md5:" + "0" * 64,
        hashlib.sha256(CANARY.encode()).hexdigest(),
        " sha256:" + hashlib.sha256(CANARY.encode()).hexdigest(),
        "sha256:" + hashlib.sha256(CANARY.encode()).hexdigest() + "\n",
        "sha256:",
        "",
        CANARY,
    ],
    ids=hide,
)
def test_malformed_digest(digest: str) -> None:
    error = raises_config(lambda: APIKey(digest=digest), "digest must be 'sha256:' followed")
    assert_no_secret(error)


def test_non_str_digest() -> None:
    raw = hashlib.sha256(CANARY.encode()).digest()
    raises_config(lambda: APIKey(digest=raw), "digest must be")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    ["", "   ", " billing", "billing ", "bill\ning", "bill\x00ing", "b" * 129, 7, b"billing"],
)
def test_bad_name(name: object) -> None:
    error = raises_config(
        lambda: APIKey(CANARY, name=name),  # type: ignore[arg-type]
        "key name must be printable text of 1 to 128",
    )
    assert_no_secret(error)


def test_name_of_128_characters_is_fine() -> None:
    assert APIKey(CANARY, name="b" * 128).key_id == "b" * 128


@pytest.mark.parametrize("scopes", ["read", b"read", 3, None], ids=hide)
def test_scopes_not_a_collection(scopes: object) -> None:
    error = raises_config(
        lambda: APIKey(CANARY, scopes=scopes),  # type: ignore[arg-type]
        "scopes of key .* must be a collection of strings",
    )
    assert_no_secret(error)


@pytest.mark.parametrize(
    "scope", ["has space", 'quo"te', "back\\slash", "", "é", 1, None], ids=hide
)
def test_bad_scope(scope: object) -> None:
    error = raises_config(
        lambda: APIKey(CANARY, scopes=["read", scope]),  # type: ignore[list-item]
        "is not an RFC 6749 scope token",
    )
    assert_no_secret(error)


def test_unhashable_scope_is_a_configuration_error() -> None:
    raises_config(lambda: APIKey(CANARY, scopes=[["read"]]), "scope")  # type: ignore[list-item]


@pytest.mark.parametrize("metadata", [[("team", "x")], "team", 1], ids=hide)
def test_metadata_not_a_mapping(metadata: object) -> None:
    error = raises_config(
        lambda: APIKey(CANARY, metadata=metadata),  # type: ignore[arg-type]
        "metadata of key .* must be a mapping",
    )
    assert_no_secret(error)


# ------------------------------------------------------------------- APIKeyAuth


def test_verify_returns_the_key_context() -> None:
    auth = APIKeyAuth(
        keys=[
            APIKey(CANARY, name="billing", scopes={"read", "write"}, metadata={"team": "b"}),
            OTHER_KEY,
        ],
        mode="advanced",
    )
    ctx = auth.verify(CANARY)
    assert isinstance(ctx, AuthContext)
    assert ctx.authenticated is True
    assert ctx.key_id == "billing"
    assert ctx.scopes == frozenset({"authenticated", "read", "write"})
    assert dict(ctx.metadata) == {"team": "b"}
    assert ctx.mode == "advanced"
    other = auth.verify(OTHER_KEY)
    assert other is not None
    assert other.key_id == APIKey(OTHER_KEY).key_id
    assert other.scopes == frozenset({"authenticated"})
    assert CANARY not in repr(ctx)


def test_verify_returns_the_same_precomputed_context() -> None:
    auth = APIKeyAuth(keys=[CANARY])
    first = auth.verify(CANARY)
    assert first is not None
    assert auth.verify(CANARY) is first
    assert auth.verify(str(CANARY + " ").strip()) is first


@pytest.mark.parametrize(
    "token",
    ["", "sk-wrong", CANARY[:-1], CANARY + "x", CANARY.upper(), " " + CANARY, CANARY + "\n"],
    ids=hide,
)
def test_unknown_token_is_none(token: str) -> None:
    assert APIKeyAuth(keys=[CANARY]).verify(token) is None


@pytest.mark.parametrize("token", [None, 42, CANARY.encode(), [CANARY], bytearray(b"x")], ids=hide)
def test_non_str_token_is_none(token: object) -> None:
    assert APIKeyAuth(keys=[CANARY]).verify(token) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "token", [chr(0xD800), CANARY + chr(0xDFFF), chr(0xDC80) + CANARY], ids=hide
)
def test_token_with_lone_surrogates_is_none(token: str) -> None:
    auth = APIKeyAuth(keys=[CANARY])
    assert auth.verify(token) is None
    assert auth.remove_key(token) is False
    assert auth.key_ids == (APIKey(CANARY).key_id,)


def test_digest_key_verifies_its_plain_token() -> None:
    auth = APIKeyAuth(keys=[APIKey(digest=plain_digest(CANARY), name="ci")])
    ctx = auth.verify(CANARY)
    assert ctx is not None
    assert ctx.key_id == "ci"
    assert auth.verify(plain_digest(CANARY)) is None


@pytest.mark.parametrize("keys", [CANARY, CANARY.encode(), 42], ids=hide)
def test_keys_must_be_a_collection(keys: object) -> None:
    error = raises_config(
        lambda: APIKeyAuth(keys=keys),  # type: ignore[arg-type]
        "keys must be a list of keys",
    )
    assert error.context == {"setting": "keys"}
    assert_no_secret(error)


@pytest.mark.parametrize("item", [42, None, CANARY.encode(), ("a",)], ids=hide)
def test_bad_key_item_names_its_index(item: object) -> None:
    error = raises_config(
        lambda: APIKeyAuth(keys=[OTHER_KEY, item]),  # type: ignore[list-item]
        r"keys\[1\]: a key must be a str or an APIKey",
    )
    assert error.context["where"] == "keys[1]"
    assert_no_secret(error)


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(lambda: [OTHER_KEY, CANARY, CANARY], id="plain-twice"),
        pytest.param(
            lambda: [OTHER_KEY, CANARY, APIKey(digest=plain_digest(CANARY))], id="plain+digest"
        ),
        pytest.param(
            lambda: [
                OTHER_KEY,
                CANARY,
                APIKey(digest=plain_digest(CANARY).upper().replace("SHA", "sha")),
            ],
            id="plain+upper-digest",
        ),
        pytest.param(
            lambda: [OTHER_KEY, APIKey(CANARY, name="a"), APIKey(CANARY, name="b")], id="renamed"
        ),
        pytest.param(lambda: [OTHER_KEY, APIKey(CANARY, name="a"), CANARY], id="named+plain"),
    ],
)
def test_duplicate_key_in_any_form(keys: Callable[[], list[str | APIKey]]) -> None:
    error = raises_config(
        lambda: APIKeyAuth(keys=keys()), r"keys\[2\] is the same key as keys\[1\]"
    )
    assert error.context["where"] == "keys[2]"
    assert_no_secret(error)
    assert hashlib.sha256(CANARY.encode()).hexdigest()[:16] not in str(error)


def test_duplicate_names() -> None:
    keys = [APIKey(CANARY, name="ci"), APIKey(OTHER_KEY, name="ci")]
    error = raises_config(
        lambda: APIKeyAuth(keys=keys), r"keys\[1\] reuses the key_id 'ci' of keys\[0\]"
    )
    assert error.context == {"where": "keys[1]", "key_id": "ci"}
    assert_no_secret(error)
    assert OTHER_KEY not in str(error)


def test_name_clashing_with_a_fingerprint() -> None:
    fingerprint = APIKey(CANARY).key_id
    with pytest.raises(ConfigurationError, match="reuses the key_id"):
        APIKeyAuth(keys=[CANARY, APIKey(OTHER_KEY, name=fingerprint)])


def test_empty_key_list_verifies_nothing() -> None:
    empty: list[Iterable[str]] = [[], (), iter([])]
    for keys in empty:
        auth = APIKeyAuth(keys=keys)
        assert auth.verify(CANARY) is None
        assert auth.verify("") is None
        assert auth.key_ids == ()
        assert auth.status()["key_count"] == 0
    assert APIKeyAuth().verify(CANARY) is None


def test_keys_accepts_any_iterable() -> None:
    auth = APIKeyAuth(keys=(k for k in [CANARY, OTHER_KEY]))
    assert auth.verify(CANARY) is not None
    assert auth.verify(OTHER_KEY) is not None


# --------------------------------------------------------------------- rotation


def test_add_key_returns_key_id_and_verifies() -> None:
    auth = APIKeyAuth(keys=[CANARY])
    assert auth.verify(OTHER_KEY) is None
    assert auth.add_key(OTHER_KEY) == APIKey(OTHER_KEY).key_id
    assert auth.verify(OTHER_KEY) is not None
    assert auth.add_key(APIKey(THIRD_KEY, name="third", scopes={"x"})) == "third"
    ctx = auth.verify(THIRD_KEY)
    assert ctx is not None
    assert ctx.scopes == frozenset({"authenticated", "x"})
    assert auth.verify(CANARY) is not None
    assert set(auth.key_ids) == {APIKey(CANARY).key_id, APIKey(OTHER_KEY).key_id, "third"}


@pytest.mark.parametrize(
    "duplicate",
    [
        pytest.param(lambda: CANARY, id="plain"),
        pytest.param(lambda: APIKey(digest=plain_digest(CANARY)), id="digest"),
        pytest.param(lambda: APIKey(CANARY, name="other-name"), id="renamed"),
        pytest.param(lambda: APIKey(THIRD_KEY, name="ci"), id="same-name"),
    ],
)
def test_add_duplicate_raises_and_changes_nothing(duplicate: Callable[[], str | APIKey]) -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="ci"), OTHER_KEY])
    before_ids, before_status = auth.key_ids, auth.status()
    before_ctx = auth.verify(CANARY)
    error = raises_config(lambda: auth.add_key(duplicate()), "same key|reuses the key_id")
    assert "add_key" in str(error)  # not a misleading keys[<n>] index
    assert_no_secret(error)
    assert auth.key_ids == before_ids
    assert auth.status() == before_status
    assert auth.verify(CANARY) is before_ctx
    assert auth.verify(THIRD_KEY) is None


def test_add_invalid_key_raises_without_the_secret() -> None:
    auth = APIKeyAuth(keys=[OTHER_KEY])
    error = raises_config(lambda: auth.add_key(CANARY + "!"), "add_key")
    assert_no_secret(error, CANARY + "!")
    assert error.__cause__ is None
    raises_config(lambda: auth.add_key(42), "add_key")  # type: ignore[arg-type]
    assert auth.key_ids == (APIKey(OTHER_KEY).key_id,)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(lambda: CANARY, id="plain"),
        pytest.param(lambda: "billing", id="name"),
        pytest.param(lambda: APIKey(CANARY, name="billing"), id="apikey"),
        pytest.param(lambda: APIKey(digest=plain_digest(CANARY)), id="apikey-digest-unnamed"),
    ],
)
def test_remove_named_key(how: Callable[[], str | APIKey]) -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="billing"), OTHER_KEY])
    assert auth.remove_key(how()) is True
    assert auth.verify(CANARY) is None
    assert auth.verify(OTHER_KEY) is not None
    assert auth.key_ids == (APIKey(OTHER_KEY).key_id,)
    assert auth.remove_key(how()) is False


def test_remove_by_fingerprint_key_id() -> None:
    auth = APIKeyAuth(keys=[CANARY, OTHER_KEY])
    fingerprint = APIKey(CANARY).key_id
    assert auth.remove_key(fingerprint) is True
    assert auth.verify(CANARY) is None
    assert auth.verify(OTHER_KEY) is not None
    assert fingerprint not in auth.key_ids


def test_removed_key_can_be_added_again() -> None:
    auth = APIKeyAuth(keys=[CANARY])
    assert auth.remove_key(CANARY) is True
    assert auth.add_key(CANARY) == APIKey(CANARY).key_id
    assert auth.verify(CANARY) is not None


@pytest.mark.parametrize(
    "unknown",
    [
        pytest.param(lambda: THIRD_KEY, id="other-plain"),
        pytest.param(lambda: "nobody", id="other-name"),
        pytest.param(lambda: "", id="empty"),
        pytest.param(lambda: plain_digest(CANARY), id="digest-string"),
        pytest.param(lambda: APIKey(THIRD_KEY), id="other-apikey"),
    ],
)
def test_remove_unknown_is_false(unknown: Callable[[], str | APIKey]) -> None:
    auth = APIKeyAuth(keys=[CANARY, OTHER_KEY])
    assert auth.remove_key(unknown()) is False
    assert len(auth.key_ids) == 2
    assert auth.verify(CANARY) is not None


@pytest.mark.parametrize("value", [None, 42, CANARY.encode(), [CANARY]], ids=hide)
def test_remove_non_str_is_false(value: object) -> None:
    auth = APIKeyAuth(keys=[CANARY])
    assert auth.remove_key(value) is False  # type: ignore[arg-type]
    assert auth.verify(CANARY) is not None


def test_status_and_key_ids_hold_no_secret() -> None:
    auth = APIKeyAuth(keys=[CANARY, APIKey(OTHER_KEY, name="ci")])
    status = auth.status()
    assert {"mode", "key_count", "key_ids"} <= set(status)
    assert status["mode"] == "simple"
    assert status["key_count"] == 2
    assert sorted(status["key_ids"]) == sorted([APIKey(CANARY).key_id, "ci"])
    assert set(auth.key_ids) == {APIKey(CANARY).key_id, "ci"}
    assert isinstance(auth.key_ids, tuple)
    hex_digest = hashlib.sha256(CANARY.encode()).hexdigest()
    for text in (repr(status), repr(auth), str(auth), repr(auth.key_ids)):
        assert CANARY not in text
        assert OTHER_KEY not in text
        assert hex_digest[:16] not in text
    auth.remove_key("ci")
    assert auth.status()["key_count"] == 1
    assert auth.status()["key_ids"] == [APIKey(CANARY).key_id]


def test_replace_keys_reuses_the_entries_of_unchanged_keys() -> None:
    kept = APIKey(CANARY, name="kept", scopes={"read"})
    changed = APIKey(OTHER_KEY, name="changed", scopes={"read"})
    auth = APIKeyAuth(keys=[kept, changed])
    before = auth.snapshot.by_digest
    new_record = APIKey(OTHER_KEY, name="changed", scopes={"read", "write"})
    changes = auth.replace_keys([APIKey(CANARY, name="kept", scopes={"read"}), new_record])
    assert changes == KeyChanges(added=(), removed=())  # the same ids
    after = auth.snapshot.by_digest
    assert after[kept._digest] is before[kept._digest]  # an equal key: the same entry
    assert after[changed._digest] is not before[changed._digest]
    assert after[changed._digest].key is new_record
    context = auth.verify(OTHER_KEY)
    assert context is not None
    assert "write" in context.scopes


def test_rotation_is_atomic_under_threads() -> None:
    key_a, key_b = CANARY, OTHER_KEY
    # Fillers make each rebuild take long enough for a torn swap to be seen.
    fillers = [f"sk-fill-{i:06d}-abcdefghij" for i in range(200)]
    auth = APIKeyAuth(keys=[APIKey(key_a, name="a"), *fillers])
    done = threading.Event()
    errors: list[BaseException] = []
    failures: list[str] = []
    checks = [0]

    def writer() -> None:
        try:
            for _ in range(1000):
                auth.add_key(APIKey(key_b, name="b"))
                if not auth.remove_key("b"):
                    failures.append("remove_key('b') found nothing")
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                ctx = auth.verify(key_a)
                if ctx is None or ctx.key_id != "a":
                    failures.append(f"verify(A) gave {ctx!r}")
                other = auth.verify(key_b)
                if other is not None and other.key_id != "b":
                    failures.append(f"verify(B) gave {other!r}")
                ids = auth.key_ids
                if "a" not in ids or len(ids) not in (201, 202):
                    failures.append(f"key_ids gave {len(ids)} ids")
                status = auth.status()
                if status["key_count"] != len(status["key_ids"]) or "a" not in status["key_ids"]:
                    failures.append(f"status gave {status['key_count']} keys")
                checks[0] += 1
        except BaseException as error:
            errors.append(error)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=reader) for _ in range(3)]
        threads.append(threading.Thread(target=writer))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(old_interval)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert failures[:5] == []
    assert checks[0] > 0
    assert auth.key_ids == tuple(sorted(["a", *(APIKey(f).key_id for f in fillers)]))


# ---------------------------------------------------------------------- resolve


def test_resolve_returns_the_precomputed_entry() -> None:
    key = APIKey(CANARY, name="billing", scopes={"read"})
    auth = APIKeyAuth(keys=[key, OTHER_KEY])
    entry = auth.resolve(CANARY.encode())
    assert isinstance(entry, KeyEntry)
    assert entry.key == key
    assert entry.digest == hashlib.sha256(CANARY.encode()).digest()
    assert entry.context is auth.verify(CANARY)
    assert entry.user == APIKeyUser("billing")
    assert entry.user.identity == "billing"
    again = auth.resolve(CANARY.encode())
    assert again is entry
    assert again.context is entry.context
    assert again.user is entry.user
    assert auth.resolve(b"sk-nope") is None
    assert auth.resolve(b"") is None
    assert auth.resolve(CANARY.encode() + b"\x00") is None


# ------------------------------------------------------------------- properties

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
b64_keys = st.builds(
    lambda body, pad: body + "=" * pad,
    st.text(alphabet=B64, min_size=16, max_size=48),
    st.integers(0, 2),
)
# st.text() never yields lone surrogates, yet a Python str (a header decoded with
# surrogateescape, a JSON body) may hold them.
any_text = st.lists(st.one_of(st.characters(), st.characters(categories=["Cs"]))).map("".join)


@given(any_text)
def test_verify_never_raises(token: str) -> None:
    result = APIKeyAuth(keys=[CANARY, APIKey(OTHER_KEY, name="other")]).verify(token)
    assert result is None or token in (CANARY, OTHER_KEY)


@given(st.lists(b64_keys, min_size=1, max_size=12, unique=True), st.integers(0, 12))
def test_verify_is_exact_for_configured_keys(keys: list[str], split: int) -> None:
    configured, absent = keys[:split], keys[split:]
    auth = APIKeyAuth(keys=configured)
    for key in configured:
        ctx = auth.verify(key)
        assert ctx is not None
        assert ctx.authenticated
        assert ctx.key_id == APIKey(key).key_id
    for key in absent:
        assert auth.verify(key) is None
    assert len(auth.key_ids) == len(configured)


def test_repr_shows_the_validity_window_and_never_the_key() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    key = APIKey(CANARY, name="w", not_before=start, expires_at=start + timedelta(days=1))
    assert repr(key) == (
        "APIKey(key_id='w', scopes=[], not_before='2027-01-01T00:00:00+00:00', "
        "expires_at='2027-01-02T00:00:00+00:00')"
    )
    assert CANARY not in repr(key)


def test_verifiers_never_see_bytes_that_are_not_ascii() -> None:
    seen: list[str] = []

    def verifier(token: str) -> AuthContext | None:
        seen.append(token)
        return AuthContext(True, key_id="v")

    auth = APIKeyAuth(keys=[OTHER_KEY], verifiers=[verifier])
    assert auth.resolve("sk-é".encode()) is None
    assert seen == []
    assert isinstance(auth.resolve(b"sk-ascii"), Accepted)
    assert seen == ["sk-ascii"]


def test_a_half_built_key_can_be_shown_by_error_reporters() -> None:
    with pytest.raises(ConfigurationError) as caught:
        APIKey(CANARY, name=" padded")
    text = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert "APIKey(key_id=" in text


def test_metadata_nested_too_deeply_is_a_configuration_error() -> None:
    deep: dict[str, Any] = {}
    current = deep
    for _ in range(sys.getrecursionlimit() + 10):
        current["x"] = {}
        current = current["x"]
    with pytest.raises(ConfigurationError, match="nested too deeply"):
        APIKey(CANARY, metadata=deep)


# ============================================ verifiers: what they return is checked

# The b64token alphabet (RFC 6750 §2.1), without '=' (only allowed at the end).
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
_SEPARATORS = [":", " ", "-", ".", "\u200b", "\u00b7", "/", "\u3000", "|", "--", ": "]


def _respond(verifier: Callable[[str], Any], token: str) -> tuple[Any, list[Any]]:
    from structlog.testing import capture_logs

    from asgi_apikey import APIKeyMiddleware
    from tests.asgi import Recorder, bearer, call, http_scope

    auth = APIKeyAuth(keys=[OTHER_KEY], verifiers=[verifier], mode="advanced")
    app = APIKeyMiddleware(Recorder(), auth=auth)
    with capture_logs() as logs:
        result = call(app, http_scope("/v1/x", headers=[bearer(token)]))
    return result, logs


def _squeezed(text: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(c for c in folded if c.isascii() and c.isalnum())


def _holds_16_of(token: str, text: str) -> bool:
    secret, plain = _squeezed(token), _squeezed(text)
    return any(plain[i : i + 16] in secret for i in range(len(plain) - 15)) or any(
        text[i : i + 16] in token for i in range(len(text) - 15)
    )


def _interleave(token: str, separator: str, every: int) -> str:
    return separator.join(token[i : i + every] for i in range(0, len(token), every))


@pytest.mark.parametrize("separator", _SEPARATORS, ids=ascii)
@pytest.mark.parametrize(
    "where",
    [
        "key_id",
        "scope",
        "metadata-value",
        "metadata-key",
        "nested-metadata",
        "metadata-bytes",
        "rejected-key_id",
    ],
)
def test_a_verifier_that_returns_the_token_split_up_is_refused(separator: str, where: str) -> None:
    token = CANARY
    split = _interleave(token, separator, 4)

    def verifier(given: str) -> AuthContext | Rejected:
        if where == "rejected-key_id":
            return Rejected("Revoked", key_id=split[:128])
        if where == "key_id":
            return AuthContext(True, key_id=split)
        if where == "scope":
            return AuthContext(True, key_id="jwt:a", scopes=frozenset({split}))
        metadata: Any = {
            "metadata-value": {"sub": split},
            "metadata-key": {split: 1},
            "nested-metadata": {"a": [{"b": ("x", split.upper())}]},
            "metadata-bytes": {"raw": frozenset({split.encode("utf-8")})},
        }[where]
        return AuthContext(True, key_id="jwt:a", metadata=metadata)

    result, logs = _respond(verifier, token)
    assert result.status == 401
    assert result.seen is None
    assert [entry["event"] for entry in logs] == ["verifier_failed", "authentication_failed"]
    assert logs[0]["problem"] in _PROBLEMS
    texts = [repr(entry) for entry in logs] + [result.everything().decode("latin-1")]
    for text in texts:
        assert not _holds_16_of(token, text), text


@given(
    token=st.text(alphabet=_B64, min_size=16, max_size=80),
    separator=st.sampled_from(_SEPARATORS),
    every=st.integers(1, 15),
    upper=st.booleans(),
    where=st.sampled_from(["key_id", "scope", "metadata", "rejected-key_id"]),
)
def test_a_token_split_up_never_reaches_the_key_id_the_response_or_a_log(
    token: str, separator: str, every: int, upper: bool, where: str
) -> None:
    split = _interleave(token.upper() if upper else token, separator, every)[:128]

    def verifier(given: str) -> AuthContext | Rejected:
        if where == "rejected-key_id":
            return Rejected("Revoked", key_id=split)
        if where == "key_id":
            return AuthContext(True, key_id=split)
        if where == "scope":
            return AuthContext(True, key_id="jwt:a", scopes=frozenset({split}))
        return AuthContext(True, key_id="jwt:a", metadata={"claims": {"jti": split}})

    result, logs = _respond(verifier, token)
    if not _holds_16_of(token, split):
        return  # fewer than 16 letters and digits of the token: allowed by design
    # Refused exactly as a token no verifier knows: the same bytes, the same event,
    # plus one verifier_failed whose problem is a fixed sentence.
    unknown, baseline = _respond(lambda given: None, token)
    assert result.messages == unknown.messages
    assert result.seen is None
    assert [entry["event"] for entry in logs] == ["verifier_failed", "authentication_failed"]
    assert logs[0]["problem"] in _PROBLEMS
    assert logs[1] == baseline[0]


_PROBLEMS = {
    "returned a Rejected that quotes the token",
    "returned a key_id that quotes the token (it is logged and counted)",
    "returned a scope that quotes the token",
    "returned metadata that quotes the token",
    "returned a key_id that is not printable text of 1 to 128 characters",
    "returned a scope that is not an RFC 6749 scope token (printable ASCII without "
    "spaces, quotes or backslashes)",
    "built a Rejected that is not valid: Rejected(key_id=...) must be None or printable "
    "text of 1 to 128 characters",
}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("SK-CANARY-5F3C9A1E7B2D4C6F8A0E", id="upper-case"),
        pytest.param("sk:canary:5f3c:9a1e:7b2d:4c6f:8a0e", id="colons"),
        pytest.param("s k c a n a r y 5 f 3 c 9 a 1 e 7 b", id="spaces"),
        pytest.param(
            "\uff53\uff4b\uff43\uff41\uff4e\uff41\uff52\uff59\uff15\uff46\uff13\uff43\uff19\uff41\uff11\uff45",
            id="full-width",
        ),
        pytest.param("canary\u200b5f3c\u200b9a1e\u200b7b2d", id="zero-width"),
    ],
)
def test_quotes_sees_a_token_through_separators_and_case(text: str) -> None:
    from asgi_apikey.verifiers import _quotes

    assert _quotes(CANARY, text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("jwt:alice", id="a-name"),
        pytest.param("canary-5f3c-9a1e", id="12-letters-and-digits"),
        pytest.param("The token has expired", id="a-sentence"),
        pytest.param("sk-canary", id="the-selector"),
    ],
)
def test_quotes_allows_fewer_than_16_letters_and_digits_of_the_token(text: str) -> None:
    from asgi_apikey.verifiers import _quotes

    assert not _quotes(CANARY, text)


# ------------------------------------- a verifier's metadata or scopes that do not fit


class _Unreadable(dict[str, Any]):
    """A mapping whose items() raises."""

    def items(self) -> Any:
        raise RuntimeError("items() failed")


def _nested(levels: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    current = top
    for _ in range(levels - 1):
        current["x"] = {}
        current = current["x"]
    return top


def _cyclic() -> dict[str, Any]:
    cycle: dict[str, Any] = {"name": "a"}
    cycle["self"] = cycle
    return cycle


def _listed_cycle() -> list[Any]:
    cycle: list[Any] = []
    cycle.append(cycle)
    return cycle


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        pytest.param(
            _cyclic(),
            "returned metadata nested more than 32 levels deep (or a cycle)",
            id="cyclic",
        ),
        pytest.param(
            {"list": _listed_cycle()},
            "returned metadata nested more than 32 levels deep (or a cycle)",
            id="cyclic-list",
        ),
        pytest.param(
            _nested(600),
            "returned metadata nested more than 32 levels deep (or a cycle)",
            id="600-levels",
        ),
        pytest.param(
            _nested(sys.getrecursionlimit() + 50),
            "returned metadata nested more than 32 levels deep (or a cycle)",
            id="past-the-recursion-limit",
        ),
        pytest.param(
            _nested(33),
            "returned metadata nested more than 32 levels deep (or a cycle)",
            id="33-levels",
        ),
        pytest.param(_Unreadable(a=1), "raised RuntimeError", id="items-raises"),
        pytest.param({"a": _Unreadable(b=1)}, "raised RuntimeError", id="nested-items-raises"),
    ],
)
def test_metadata_that_cannot_be_frozen_is_a_verifier_failure(metadata: Any, problem: str) -> None:
    def verifier(token: str) -> AuthContext:
        return AuthContext(True, key_id="jwt:a", metadata=metadata)

    for _ in range(2):  # on every request, not only the first
        result, logs = _respond(verifier, CANARY)
        assert result.status == 401
        assert result.seen is None
    assert [(e["event"], e.get("problem")) for e in logs][:1] == [("verifier_failed", problem)]
    assert CANARY not in repr(logs)


def test_metadata_of_32_levels_is_accepted() -> None:
    def verifier(token: str) -> AuthContext:
        return AuthContext(True, key_id="jwt:a", metadata=_nested(32))

    result, _ = _respond(verifier, CANARY)
    assert result.status == 200


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param("two words", id="space"),
        pytest.param('say"what', id="quote"),
        pytest.param("back\\slash", id="backslash"),
        pytest.param("", id="empty"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("line\nbreak", id="newline"),
        pytest.param("tab\there", id="tab"),
    ],
)
def test_a_verifier_scope_outside_the_scope_token_grammar_is_a_verifier_failure(
    scope: str,
) -> None:
    def verifier(token: str) -> AuthContext:
        return AuthContext(True, key_id="jwt:a", scopes=frozenset({"read", scope}))

    result, logs = _respond(verifier, CANARY)
    assert result.status == 401
    assert logs[0]["event"] == "verifier_failed"
    assert logs[0]["problem"].startswith("returned a scope that is not an RFC 6749 scope token")


def test_a_verifier_failure_leaves_no_frame_holding_the_token() -> None:
    # Nothing escapes as an exception, so no traceback (and no frame locals) can
    # carry the token to an error reporter; the verifier's own error is dropped.
    import gc

    from asgi_apikey.keys import KeySnapshot
    from asgi_apikey.keytable import DigestTable, NameTable

    def verifier(token: str) -> AuthContext:
        return AuthContext(True, key_id="jwt:a", metadata=_cyclic())

    snapshot = KeySnapshot(
        by_digest=DigestTable.EMPTY,
        by_id=NameTable.EMPTY,
        anonymous=AuthContext(False),
        verifiers=(verifier,),
        report_verifier_failure=lambda name, problem: None,
    )
    token = CANARY.encode()
    assert snapshot.resolve(token) is None
    assert sys.exc_info() == (None, None, None)
    gc.collect()
    frames = [o for o in gc.get_objects() if type(o).__name__ == "frame"]
    for frame in frames:
        for value in frame.f_locals.values():
            if isinstance(value, str) and CANARY in value:
                raise AssertionError(f"a frame of {frame.f_code.co_name} holds the token")


def test_key_metadata_that_cannot_be_read_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        APIKey(CANARY, name="ci", metadata={"a": _Unreadable(b=1)})
    assert str(caught.value) == "metadata of key 'ci' cannot be read (RuntimeError)"
    assert caught.value.context == {"key_id": "ci"}
    assert caught.value.__context__ is None
    with pytest.raises(ConfigurationError, match=r"nested too deeply \(more than 32 levels"):
        APIKey(CANARY, metadata=_nested(33))
    assert APIKey(CANARY, metadata=_nested(32)).metadata
