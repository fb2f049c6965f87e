"""RFC 6750 credential parsing: ``parse_authorization``, ``parse_token``,
``is_b64token`` and ``CredentialReader``.

Tables pin the named behaviours of DESIGN.md ("Credentials", "Precise
behaviours"); Hypothesis checks the parser against an independent,
hand-written reference of the grammar::

    credentials = "Bearer" 1*SP b64token        (scheme case-insensitive)
    b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="

with SP (and only SP) tolerated around the whole field value.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_apikey.credentials import (
    DEFAULT_MAX_TOKEN_LENGTH,
    CredentialReader,
    Malformed,
    is_b64token,
    parse_authorization,
    parse_token,
)
from tests.asgi import CANARY, OTHER_KEY

KEY = CANARY.encode("ascii")
OTHER = OTHER_KEY.encode("ascii")
B64_CHARS = (string.ascii_letters + string.digits + "-._~+/").encode("ascii")


# ---------------------------------------------------------------------------
# An independent reference of the grammar: byte by byte, no regex, nothing
# shared with the module under test.
# ---------------------------------------------------------------------------

_REF_TOKEN_BYTES = frozenset(B64_CHARS)
_SP = 0x20
_EQUALS = 0x3D


def ref_is_b64token(value: bytes) -> bool:
    i = 0
    while i < len(value) and value[i] in _REF_TOKEN_BYTES:
        i += 1
    if i == 0:
        return False
    while i < len(value) and value[i] == _EQUALS:
        i += 1
    return i == len(value)


def ref_bearer_token(value: bytes) -> bytes | None:
    """The token of a well-formed bearer field value, else ``None``."""
    start, end = 0, len(value)
    while start < end and value[start] == _SP:
        start += 1
    while end > start and value[end - 1] == _SP:
        end -= 1
    i = start
    for lower in b"bearer":
        if i >= end or value[i] not in (lower, lower - 0x20):
            return None
        i += 1
    spaces_from = i
    while i < end and value[i] == _SP:
        i += 1
    if i == spaces_from:
        return None
    token = value[i:end]
    return token if ref_is_b64token(token) else None


def test_reference_sanity() -> None:
    # The reference itself must be right, or the properties prove nothing.
    assert ref_bearer_token(b"  bEaReR   ab-c==  ") == b"ab-c=="
    assert ref_bearer_token(b"Bearer " + B64_CHARS + b"==") == B64_CHARS + b"=="
    for rejected in (b"", b"Bearer", b"Bearer ", b"Bearerabc", b"Bearer\tabc", b"Bearer a b"):
        assert ref_bearer_token(rejected) is None, rejected
    for rejected in (b"Bearer ab=cd", b"Bearer =", b"Basic abc", b"\tBearer abc", b"Bearer a\n"):
        assert ref_bearer_token(rejected) is None, rejected
    assert ref_is_b64token(b"a=")
    assert not ref_is_b64token(b"=a")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def assert_safe_description(result: object, *secrets: bytes) -> None:
    """A Malformed whose description is plain printable ASCII and echoes no secret.

    Secrets shorter than 8 bytes are not checked: a description may well
    contain "a" or "=" by chance.
    """
    assert isinstance(result, Malformed), result
    description = result.description
    assert isinstance(description, str)
    assert description
    assert description.isascii(), description
    assert description.isprintable(), description
    for secret in secrets:
        if len(secret) >= 8:
            assert secret.decode("latin-1") not in description
    assert CANARY not in description
    assert OTHER_KEY not in description


# Whitespace other than SP, as the bytes a client could send (UTF-8, and the
# single Latin-1 bytes for NBSP and NEL).
UNICODE_SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() and c != _SP]
OTHER_WHITESPACE: list[bytes] = sorted(
    {ch.encode("utf-8") for ch in UNICODE_SPACES}
    | {ch.encode("latin-1") for ch in UNICODE_SPACES if ord(ch) < 0x100}
)
CONTROL_BYTES: list[bytes] = [bytes([b]) for b in [*range(0x20), 0x7F]]

# Bytes that must never be part of an accepted token, by name.
BAD_BYTES: dict[str, bytes] = {
    "CR": b"\r",
    "LF": b"\n",
    "CRLF": b"\r\n",
    "HTAB": b"\t",
    "VT": b"\x0b",
    "FF": b"\x0c",
    "NUL": b"\x00",
    "DEL": b"\x7f",
    "NBSP-utf8": b"\xc2\xa0",
    "NBSP-latin1": b"\xa0",
    "NEL-utf8": b"\xc2\x85",
    "NEL-latin1": b"\x85",
    "LS-U+2028": "\u2028".encode(),
    "e-acute": "é".encode(),
    "byte-0x80": b"\x80",
    "byte-0xff": b"\xff",
    "dquote": b'"',
    "comma": b",",
    "semicolon": b";",
    "at": b"@",
    "colon": b":",
    "backslash": b"\\",
    "percent": b"%",
    "paren": b"(",
}


# ---------------------------------------------------------------------------
# parse_authorization: tables
# ---------------------------------------------------------------------------

ACCEPTED: list[tuple[str, bytes, bytes]] = [
    ("canonical", b"Bearer " + KEY, KEY),
    ("lower-scheme", b"bearer " + KEY, KEY),
    ("upper-scheme", b"BEARER " + KEY, KEY),
    ("mixed-scheme", b"bEaReR " + KEY, KEY),
    ("two-spaces", b"Bearer  " + KEY, KEY),
    ("many-spaces", b"Bearer      " + KEY, KEY),
    ("leading-space", b" Bearer " + KEY, KEY),
    ("leading-spaces", b"   Bearer " + KEY, KEY),
    ("trailing-space", b"Bearer " + KEY + b" ", KEY),
    ("trailing-spaces", b"Bearer " + KEY + b"    ", KEY),
    ("spaces-everywhere", b"  bearer   " + KEY + b"  ", KEY),
    ("all-b64token-chars", b"Bearer " + B64_CHARS, B64_CHARS),
    ("all-chars-and-padding", b"Bearer " + B64_CHARS + b"==", B64_CHARS + b"=="),
    ("one-trailing-equals", b"Bearer abc=", b"abc="),
    ("many-trailing-equals", b"Bearer abc====", b"abc===="),
    ("single-char", b"Bearer a", b"a"),
    ("single-tilde", b"Bearer ~", b"~"),
    ("punctuation-only", b"Bearer -._~+/", b"-._~+/"),
]


@pytest.mark.parametrize(
    ("value", "token"), [(v, t) for _, v, t in ACCEPTED], ids=[i for i, _, _ in ACCEPTED]
)
def test_parse_authorization_accepts(value: bytes, token: bytes) -> None:
    assert parse_authorization(value) == token
    assert type(parse_authorization(value)) is bytes


OTHER_SCHEMES: list[tuple[str, bytes]] = [
    ("basic", b"Basic dXNlcjpwYXNz"),
    ("basic-lower", b"basic dXNlcjpwYXNz"),
    ("basic-alone", b"Basic"),
    ("digest", b'Digest username="a", realm="b", nonce="c"'),
    ("token", b"Token " + KEY),
    ("bearerx", b"Bearerx abc"),
    ("bearer-prefix-tchar", b"Bearer_ " + KEY),
    ("bear", b"Bear " + KEY),
    ("bearer-percent", b"Bearer% " + KEY),
    ("negotiate", b"Negotiate YIIabc=="),
    ("apikey", b"ApiKey " + KEY),
    ("padded-basic", b"  Basic dXNlcjpwYXNz  "),
]


@pytest.mark.parametrize("value", [v for _, v in OTHER_SCHEMES], ids=[i for i, _ in OTHER_SCHEMES])
def test_parse_authorization_other_scheme_is_none(value: bytes) -> None:
    assert parse_authorization(value) is None


def _malformed_cases() -> list[tuple[str, bytes]]:
    cases: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("only-spaces", b"   "),
        ("scheme-only", b"Bearer"),
        ("scheme-space", b"Bearer "),
        ("scheme-spaces", b"Bearer     "),
        ("lower-scheme-only", b"bearer"),
        ("space-inside", b"Bearer a b"),
        ("space-inside-key", b"Bearer " + KEY[:10] + b" " + KEY[10:]),
        ("two-tokens", b"Bearer " + KEY + b" " + OTHER),
        ("tab-separator", b"Bearer\t" + KEY),
        ("tab-then-space", b"Bearer\t " + KEY),
        ("no-separator-comma", b"Bearer," + KEY),
        ("equals-middle", b"Bearer ab=cd"),
        ("equals-middle-key", b"Bearer " + KEY[:10] + b"=" + KEY[10:]),
        ("equals-first", b"Bearer =abc"),
        ("equals-only", b"Bearer ="),
        ("equals-then-char", b"Bearer abc==d"),
        ("leading-tab", b"\tBearer " + KEY),
        ("leading-nbsp", b"\xc2\xa0Bearer " + KEY),
        ("leading-crlf", b"\r\nBearer " + KEY),
        ("quoted-token", b'Bearer "' + KEY + b'"'),
        ("auth-param-form", b"Bearer token=" + KEY),
        ("starts-with-non-tchar", b"@" + KEY),
    ]
    for name, bad in BAD_BYTES.items():
        cases.append((f"{name}-before-token", b"Bearer " + bad + KEY))
        cases.append((f"{name}-inside-token", b"Bearer " + KEY[:10] + bad + KEY[10:]))
        cases.append((f"{name}-after-token", b"Bearer " + KEY + bad))
        if name != "percent":  # "%" is a tchar: "Bearer%" is another scheme
            cases.append((f"{name}-after-scheme", b"Bearer" + bad + b" " + KEY))
    return cases


MALFORMED = _malformed_cases()


@pytest.mark.parametrize("value", [v for _, v in MALFORMED], ids=[i for i, _ in MALFORMED])
def test_parse_authorization_malformed(value: bytes) -> None:
    result = parse_authorization(value)
    assert_safe_description(result, KEY, OTHER)
    # The description depends on the shape of the value, never on the secret.
    swapped = parse_authorization(value.replace(KEY, OTHER[: len(KEY)].ljust(len(KEY), b"x")))
    assert swapped == result


@pytest.mark.parametrize("max_length", [1, 8, 30, 100, DEFAULT_MAX_TOKEN_LENGTH])
def test_parse_authorization_length_limit(max_length: int) -> None:
    exact = (B64_CHARS * (max_length // len(B64_CHARS) + 1))[:max_length]
    assert parse_authorization(b"Bearer " + exact, max_length) == exact
    assert parse_authorization(b"  Bearer   " + exact + b"  ", max_length) == exact
    too_long = exact + b"a"
    assert_safe_description(parse_authorization(b"Bearer " + too_long, max_length), too_long)
    assert_safe_description(parse_authorization(b"Bearer " + exact + b"=", max_length), exact)


def test_parse_authorization_default_limit() -> None:
    assert 1024 <= DEFAULT_MAX_TOKEN_LENGTH <= 16384  # "a few KiB"
    exact = b"k" * DEFAULT_MAX_TOKEN_LENGTH
    assert parse_authorization(b"Bearer " + exact) == exact
    assert isinstance(parse_authorization(b"Bearer " + exact + b"k"), Malformed)
    assert isinstance(parse_authorization(b"Bearer " + b"k" * 1_000_000), Malformed)


def test_parse_authorization_key_limit_with_canary() -> None:
    assert parse_authorization(b"Bearer " + KEY, len(KEY)) == KEY
    assert_safe_description(parse_authorization(b"Bearer " + KEY, len(KEY) - 1), KEY)


# ---------------------------------------------------------------------------
# parse_token and is_b64token
# ---------------------------------------------------------------------------

B64_YES: list[tuple[str, bytes]] = [
    ("canary", KEY),
    ("single", b"a"),
    ("digits", b"0123456789"),
    ("all-chars", B64_CHARS),
    ("padding", b"sk-abc_123=="),
    ("one-equals", b"a="),
]
B64_NO: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("equals-only", b"="),
    ("equals-first", b"=abc"),
    ("equals-middle", b"ab=cd"),
    ("space", b"a b"),
    ("leading-space", b" abc"),
    ("trailing-space", b"abc "),
    ("trailing-newline", b"abc\n"),
    ("trailing-crlf", b"abc\r\n"),
    ("nul", b"ab\x00c"),
    ("del", b"abc\x7f"),
    ("non-ascii", "abé".encode()),
    ("nbsp", b"ab\xa0"),
    ("with-scheme", b"Bearer abc"),
    ("comma", b"a,b"),
]


@pytest.mark.parametrize("value", [v for _, v in B64_YES], ids=[i for i, _ in B64_YES])
def test_is_b64token_yes(value: bytes) -> None:
    assert is_b64token(value) is True


@pytest.mark.parametrize("value", [v for _, v in B64_NO], ids=[i for i, _ in B64_NO])
def test_is_b64token_no(value: bytes) -> None:
    assert is_b64token(value) is False


@pytest.mark.parametrize("value", [v for _, v in B64_YES], ids=[i for i, _ in B64_YES])
def test_parse_token_accepts(value: bytes) -> None:
    assert parse_token(value, "bearer token", DEFAULT_MAX_TOKEN_LENGTH) == value


@pytest.mark.parametrize("value", [v for _, v in B64_NO], ids=[i for i, _ in B64_NO])
def test_parse_token_rejects(value: bytes) -> None:
    result = parse_token(value, "X-API-Key header", DEFAULT_MAX_TOKEN_LENGTH)
    assert_safe_description(result, value)
    assert isinstance(result, Malformed)
    assert "X-API-Key header" in result.description


@pytest.mark.parametrize(
    "value",
    [KEY[:10] + bad + KEY[10:] for bad in BAD_BYTES.values()],
    ids=list(BAD_BYTES),
)
def test_parse_token_rejects_bad_bytes_without_echo(value: bytes) -> None:
    assert_safe_description(parse_token(value, "bearer token", 4096), KEY[:10], KEY[10:])


def test_parse_token_length() -> None:
    assert parse_token(KEY, "bearer token", len(KEY)) == KEY
    result = parse_token(KEY, "bearer token", len(KEY) - 1)
    assert_safe_description(result, KEY)
    assert isinstance(result, Malformed)
    assert str(len(KEY) - 1) in result.description


def test_parse_token_names_the_credential() -> None:
    result = parse_token(b"", "access_token query parameter", 10)
    assert isinstance(result, Malformed)
    assert "access_token query parameter" in result.description


# ---------------------------------------------------------------------------
# CredentialReader
# ---------------------------------------------------------------------------

Expected = tuple[bytes, bool] | None | type[Malformed]
Headers = list[tuple[bytes, bytes]]

BEARER_KEY = (b"authorization", b"Bearer " + KEY)
BASIC = (b"authorization", b"Basic dXNlcjpwYXNz")
CUSTOM_KEY = (b"x-api-key", KEY)
CUSTOM = {"header_name": "X-API-Key"}
QUERY = {"allow_query_token": True}
ALL = {"header_name": "X-API-Key", "allow_query_token": True}
NOISE = [(b"host", b"example.com"), (b"accept", b"*/*"), (b"cookie", b"a=b")]

READER_CASES: list[tuple[str, dict[str, Any], Headers, bytes, Expected]] = [
    # Authorization
    ("bearer", {}, [BEARER_KEY], b"", (KEY, False)),
    ("bearer-among-noise", {}, [*NOISE, BEARER_KEY, *NOISE], b"", (KEY, False)),
    ("bearer-spaced", {}, [(b"authorization", b" bearer   " + KEY + b" ")], b"", (KEY, False)),
    ("nothing", {}, [], b"", None),
    ("only-noise", {}, NOISE, b"", None),
    ("only-basic", {}, [BASIC], b"", None),
    ("malformed-bearer", {}, [(b"authorization", b"Bearer a b")], b"", Malformed),
    ("empty-authorization", {}, [(b"authorization", b"")], b"", Malformed),
    ("two-bearer", {}, [BEARER_KEY, BEARER_KEY], b"", Malformed),
    ("two-bearer-apart", {}, [BEARER_KEY, *NOISE, (b"authorization", b"Bearer x")], b"", Malformed),
    ("bearer-and-basic", {}, [BEARER_KEY, BASIC], b"", Malformed),
    ("basic-and-bearer", {}, [BASIC, BEARER_KEY], b"", Malformed),
    ("two-basic", {}, [BASIC, BASIC], b"", Malformed),
    # Custom header
    ("custom-ignored-by-default", {}, [CUSTOM_KEY], b"", None),
    ("custom", CUSTOM, [CUSTOM_KEY], b"", (KEY, False)),
    ("custom-among-noise", CUSTOM, [*NOISE, CUSTOM_KEY], b"", (KEY, False)),
    ("custom-spaced", CUSTOM, [(b"x-api-key", b"  " + KEY + b" ")], b"", (KEY, False)),
    ("custom-bearer-still-works", CUSTOM, [BEARER_KEY], b"", (KEY, False)),
    ("custom-empty", CUSTOM, [(b"x-api-key", b"")], b"", Malformed),
    ("custom-space-inside", CUSTOM, [(b"x-api-key", KEY[:5] + b" " + KEY[5:])], b"", Malformed),
    ("custom-with-scheme", CUSTOM, [(b"x-api-key", b"Bearer " + KEY)], b"", Malformed),
    ("custom-tab", CUSTOM, [(b"x-api-key", KEY + b"\t")], b"", Malformed),
    ("two-custom", CUSTOM, [CUSTOM_KEY, CUSTOM_KEY], b"", Malformed),
    ("two-custom-different", CUSTOM, [CUSTOM_KEY, (b"x-api-key", OTHER)], b"", Malformed),
    ("bearer-and-custom", CUSTOM, [BEARER_KEY, CUSTOM_KEY], b"", Malformed),
    ("custom-and-bearer", CUSTOM, [CUSTOM_KEY, BEARER_KEY], b"", Malformed),
    ("basic-and-custom", CUSTOM, [BASIC, CUSTOM_KEY], b"", (KEY, False)),
    ("custom-and-basic", CUSTOM, [CUSTOM_KEY, BASIC], b"", (KEY, False)),
    ("two-authorization-and-custom", CUSTOM, [BASIC, BASIC, CUSTOM_KEY], b"", Malformed),
    # Query parameter
    ("query", QUERY, [], b"access_token=abc", (b"abc", True)),
    ("query-canary", QUERY, [], b"access_token=" + KEY, (KEY, True)),
    ("query-percent-value", QUERY, [], b"access_token=sk%2Dabc%5F1%3D%3D", (b"sk-abc_1==", True)),
    ("query-percent-name", QUERY, [], b"access%5Ftoken=abc", (b"abc", True)),
    ("query-percent-name-lower", QUERY, [], b"%61ccess_token=abc", (b"abc", True)),
    ("query-among-params", QUERY, [], b"a=1&access_token=abc&b=2", (b"abc", True)),
    ("query-plus-is-space", QUERY, [], b"access_token=a+b", Malformed),
    ("query-percent-space", QUERY, [], b"access_token=a%20b", Malformed),
    ("query-percent-newline", QUERY, [], b"access_token=abc%0A", Malformed),
    ("query-percent-nul", QUERY, [], b"access_token=abc%00", Malformed),
    ("query-percent-nbsp", QUERY, [], b"access_token=abc%C2%A0", Malformed),
    ("query-equals-middle", QUERY, [], b"access_token=ab%3Dcd", Malformed),
    ("query-empty", QUERY, [], b"access_token=", Malformed),
    ("query-no-value", QUERY, [], b"access_token", Malformed),
    ("query-two", QUERY, [], b"access_token=abc&access_token=abc", Malformed),
    ("query-two-one-empty", QUERY, [], b"access_token=abc&access_token=", Malformed),
    ("query-two-encoded", QUERY, [], b"access_token=abc&access%5Ftoken=abc", Malformed),
    ("query-and-bearer", QUERY, [BEARER_KEY], b"access_token=abc", Malformed),
    ("query-and-custom", ALL, [CUSTOM_KEY], b"access_token=abc", Malformed),
    ("query-and-basic", QUERY, [BASIC], b"access_token=abc", (b"abc", True)),
    ("query-other-params", QUERY, [], b"token=abc&access_tokens=x&xaccess_token=y", None),
    ("query-empty-string", QUERY, [], b"", None),
    ("query-with-bearer-no-param", QUERY, [BEARER_KEY], b"page=2", (KEY, False)),
    ("query-disabled", {}, [], b"access_token=abc", None),
    ("query-disabled-custom", CUSTOM, [], b"access_token=abc", None),
    ("query-disabled-with-bearer", {}, [BEARER_KEY], b"access_token=abc", (KEY, False)),
    ("query-disabled-malformed", {}, [], b"access_token=a+b&access_token=", None),
]


@pytest.mark.parametrize(
    ("kwargs", "headers", "query", "expected"),
    [case[1:] for case in READER_CASES],
    ids=[case[0] for case in READER_CASES],
)
def test_reader(kwargs: dict[str, Any], headers: Headers, query: bytes, expected: Expected) -> None:
    result = CredentialReader(**kwargs).read(headers, query)
    if expected is Malformed:
        assert_safe_description(result, KEY, OTHER)
    else:
        assert result == expected
        if result is not None:
            assert type(result[0]) is bytes


@pytest.mark.parametrize(
    ("kwargs", "headers", "query"),
    [
        ({}, [(b"authorization", b"Bearer " + KEY)], b""),
        (CUSTOM, [(b"x-api-key", KEY)], b""),
        (QUERY, [], b"access_token=" + KEY),
    ],
    ids=["bearer", "custom", "query"],
)
def test_reader_length_limit_applies_to_every_method(
    kwargs: dict[str, Any], headers: Headers, query: bytes
) -> None:
    assert CredentialReader(max_token_length=len(KEY), **kwargs).read(headers, query) is not None
    result = CredentialReader(max_token_length=len(KEY) - 1, **kwargs).read(headers, query)
    assert_safe_description(result, KEY)


def test_reader_default_limit() -> None:
    exact = b"k" * DEFAULT_MAX_TOKEN_LENGTH
    reader = CredentialReader(header_name="X-API-Key", allow_query_token=True)
    assert reader.read([(b"authorization", b"Bearer " + exact)], b"") == (exact, False)
    assert isinstance(reader.read([(b"authorization", b"Bearer " + exact + b"k")], b""), Malformed)
    assert isinstance(reader.read([(b"x-api-key", exact + b"k")], b""), Malformed)
    assert isinstance(reader.read([], b"access_token=" + exact + b"k"), Malformed)


def test_reader_accepts_any_iterable_of_headers() -> None:
    def headers() -> Iterator[tuple[bytes, bytes]]:
        yield (b"host", b"example.com")
        yield (b"authorization", b"Bearer " + KEY)

    assert CredentialReader().read(headers(), b"") == (KEY, False)


def test_reader_is_reusable() -> None:
    reader = CredentialReader(header_name="X-API-Key", allow_query_token=True)
    assert reader.read([(b"x-api-key", KEY)], b"") == (KEY, False)
    assert reader.read([], b"access_token=" + OTHER) == (OTHER, True)
    assert isinstance(reader.read([(b"x-api-key", KEY)] * 2, b""), Malformed)
    assert reader.read([(b"authorization", b"Bearer " + KEY)], b"") == (KEY, False)


# ---------------------------------------------------------------------------
# Hypothesis
# ---------------------------------------------------------------------------

_BEARER_CASINGS = st.lists(st.booleans(), min_size=6, max_size=6).map(
    lambda flags: bytes(c - 0x20 if up else c for c, up in zip(b"bearer", flags, strict=True))
)
schemes = st.one_of(
    _BEARER_CASINGS,
    st.sampled_from(
        [b"Bearer", b"Bearerx", b"Bear", b"Basic", b"Token", b"", b"Bearer=", b"B\xc3\xa9arer"]
    ),
    st.binary(max_size=8),
)
separators = st.one_of(
    st.integers(0, 4).map(lambda n: b" " * n),
    st.lists(
        st.sampled_from(
            [b" ", b"\t", b"\r", b"\n", b"\x0b", b"\x0c", b"\xc2\xa0", b"\xa0", b"\x00"]
        ),
        min_size=1,
        max_size=4,
    ).map(b"".join),
)
token_pieces = st.one_of(
    st.sampled_from([bytes([c]) for c in B64_CHARS]),
    st.sampled_from(
        [b"=", b"==", b" ", b"\t", b"\r", b"\n", b"\x00", b"\x7f", b"\xa0", b"\xc2\xa0", b'"', b","]
    ),
    st.sampled_from(OTHER_WHITESPACE + CONTROL_BYTES),
    st.characters().map(lambda ch: ch.encode("utf-8", "surrogatepass")),
)
tokens = st.one_of(
    st.text(alphabet=st.sampled_from(B64_CHARS.decode()), min_size=1).map(str.encode),
    st.lists(token_pieces, max_size=24).map(b"".join),
    st.builds(
        lambda body, pad: body + pad,
        st.text(alphabet=st.sampled_from(B64_CHARS.decode()), min_size=1).map(str.encode),
        st.sampled_from([b"", b"=", b"==", b"= ", b"=a", b" ", b"  "]),
    ),
)
paddings = st.sampled_from([b"", b"", b" ", b"   ", b"\t", b"\xc2\xa0", b"\r\n", b"\x00"])
plausible_headers = st.builds(
    lambda lead, scheme, sep, token, trail: lead + scheme + sep + token + trail,
    paddings,
    schemes,
    separators,
    tokens,
    paddings,
)
header_values = st.one_of(plausible_headers, st.binary())
max_lengths = st.one_of(st.just(DEFAULT_MAX_TOKEN_LENGTH), st.integers(1, 40))


@given(st.binary())
def test_parse_authorization_never_raises(value: bytes) -> None:
    result = parse_authorization(value)
    assert result is None or isinstance(result, (bytes, Malformed))
    if isinstance(result, Malformed):
        assert_safe_description(result)


@given(header_values, max_lengths)
def test_parse_authorization_matches_reference(value: bytes, max_length: int) -> None:
    result = parse_authorization(value, max_length)
    expected = ref_bearer_token(value)
    if expected is None:
        assert not isinstance(result, bytes), (value, result)
    elif len(expected) <= max_length:
        assert result == expected
        assert type(result) is bytes
    else:
        assert isinstance(result, Malformed)
    if isinstance(result, Malformed):
        assert_safe_description(result)


@given(st.binary(), max_lengths)
def test_parse_authorization_matches_reference_on_binary(value: bytes, max_length: int) -> None:
    result = parse_authorization(value, max_length)
    expected = ref_bearer_token(value)
    if expected is not None and len(expected) <= max_length:
        assert result == expected
    else:
        assert not isinstance(result, bytes)


@given(
    st.text(alphabet=st.sampled_from(B64_CHARS.decode()), min_size=1, max_size=64),
    st.integers(0, 3),
)
def test_reference_valid_headers_are_accepted(body: str, padding: int) -> None:
    # The mostly-plausible strategy above may rarely hit valid headers; here
    # every example is valid, so an over-strict parser cannot pass quietly.
    token = body.encode() + b"=" * padding
    assert parse_authorization(b"Bearer " + token) == token


bad_whitespace = st.sampled_from(OTHER_WHITESPACE)
control_bytes = st.sampled_from(CONTROL_BYTES)
valid_keys = st.one_of(
    st.just(KEY),
    st.builds(
        lambda body, pad: body.encode() + pad,
        st.text(alphabet=st.sampled_from(B64_CHARS.decode()), min_size=1, max_size=40),
        st.sampled_from([b"", b"=", b"=="]),
    ),
)


@given(
    valid_keys,
    st.one_of(bad_whitespace, control_bytes),
    st.data(),
    st.sampled_from([b"Bearer ", b"bearer   ", b" BEARER "]),
    st.sampled_from([b"", b" ", b"  "]),
)
def test_other_whitespace_or_control_is_never_a_token(
    key: bytes, bad: bytes, data: st.DataObject, prefix: bytes, suffix: bytes
) -> None:
    assert parse_authorization(prefix + key + suffix) == key  # the unbroken key is fine
    # Before, inside or after the key...
    at = data.draw(st.integers(0, len(key)), label="position in key")
    broken = key[:at] + bad + key[at:]
    assert not isinstance(parse_authorization(prefix + broken + suffix), bytes)
    assert isinstance(parse_token(broken, "bearer token", DEFAULT_MAX_TOKEN_LENGTH), Malformed)
    reader = CredentialReader(header_name="X-API-Key", allow_query_token=True)
    assert isinstance(reader.read([(b"x-api-key", broken)], b""), Malformed)
    # ... or anywhere in the whole field value.
    header = prefix + key + suffix
    anywhere = data.draw(st.integers(0, len(header)), label="position in header")
    assert not isinstance(parse_authorization(header[:anywhere] + bad + header[anywhere:]), bytes)


@given(st.binary(), st.binary())
def test_is_b64token_and_parse_token_match_reference(value: bytes, noise: bytes) -> None:
    for candidate in (value, value + b"=", b"a" + value, B64_CHARS[: len(noise)] + noise):
        assert is_b64token(candidate) is ref_is_b64token(candidate)
        parsed = parse_token(candidate, "bearer token", DEFAULT_MAX_TOKEN_LENGTH)
        if ref_is_b64token(candidate):
            assert parsed == candidate
        else:
            assert_safe_description(parsed)


header_names = st.one_of(
    st.sampled_from([b"authorization", b"x-api-key", b"host", b"Authorization", b"X-API-Key"]),
    st.binary(max_size=16),
)
query_strings = st.one_of(
    st.binary(),
    st.lists(
        st.builds(
            lambda name, value: name + b"=" + value,
            st.sampled_from([b"access_token", b"access%5Ftoken", b"a", b"", b"access_token%"]),
            st.one_of(tokens, st.binary(max_size=12)),
        ),
        max_size=4,
    ).map(b"&".join),
)
readers = st.builds(
    CredentialReader,
    header_name=st.sampled_from([None, "X-API-Key", "api-key"]),
    allow_query_token=st.booleans(),
    max_token_length=max_lengths,
)


@given(readers, st.lists(st.tuples(header_names, header_values), max_size=5), query_strings)
def test_reader_never_raises(reader: CredentialReader, headers: Headers, query: bytes) -> None:
    result = reader.read(headers, query)
    if isinstance(result, Malformed):
        assert_safe_description(result)
    elif result is not None:
        token, via_query = result
        assert type(token) is bytes
        assert is_b64token(token)
        assert ref_is_b64token(token)
        assert type(via_query) is bool


@given(header_values, max_lengths)
def test_reader_agrees_with_parse_authorization(value: bytes, max_length: int) -> None:
    reader = CredentialReader(max_token_length=max_length)
    parsed = parse_authorization(value, max_length)
    result = reader.read([(b"authorization", value)], b"")
    if isinstance(parsed, bytes):
        assert result == (parsed, False)
    else:
        assert result == parsed
    assert isinstance(reader.read([(b"authorization", value)] * 2, b""), Malformed)


@given(header_values, max_lengths)
def test_the_readers_inline_fast_path_agrees_with_parse_authorization(
    value: bytes, max_length: int
) -> None:
    # The Authorization-only reader parses "Bearer <token>" inline; whatever it
    # answers must be what the general parser answers for the same header.
    plain = CredentialReader(max_token_length=max_length)
    expected = parse_authorization(value, max_length)
    read = plain.read([(b"host", b"x"), (b"authorization", value)], b"")
    if isinstance(expected, bytes):
        assert read == (expected, False)
    else:
        assert read == expected
