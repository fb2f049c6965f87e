"""A large key file is parsed a piece at a time: the same tables, or the whole-file answer.

``keyfile._in_pieces`` cuts a file before ``[[keys]]`` lines and parses each
piece alone, so that no single decode or parse holds the event loop. Here it
is held to the whole-file parse (``keyfile._whole``, tomllib on the whole
text) on generated files: ordinary ones, and ones built to trip it (a
``[[keys]]`` line inside a multi-line string, other top-level tables, a
static ``keys`` array, CRLF, a byte order mark, bytes that are not UTF-8).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asgi_apikey import ConfigurationError, keyfile
from asgi_apikey.keyfile import load_key_file
from tests.asgi import error_texts

HEX = "0123456789abcdef"
# Parts that are not [[keys]] tables, and strings holding a [[keys]] line.
JUNK = ["[other]\na = 1", "keys = []", 'stray = "', "[keys]", "[[keys]] # c", "  [[keys]]"]
TRICKY = [
    'metadata = { note = """\n[[keys]]\n""" }',
    "metadata = { note = '''\n[[keys]]\n''' }",
]

digests = st.text(HEX, min_size=64, max_size=64).map(lambda h: f'digest = "sha256:{h}"')
names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True).map(lambda n: f'name = "{n}"')
tricky_lines = st.sampled_from(["[[keys]]", "[other]", "x = 1", "", "# [[keys]]", "'''"])
multiline = st.lists(tricky_lines, max_size=4).map(
    lambda lines: 'metadata = { note = """\n' + "\n".join(lines) + '\n""" }'
)
fields = st.lists(st.one_of(names, multiline, st.just("# a comment"), st.just("")), max_size=3)
table = st.builds(
    lambda digest, more, sub: "\n".join(["[[keys]]", digest, *more, *sub]),
    digests,
    fields,
    st.sampled_from([[], ["[keys.metadata]", 'team = "x"']]),
)
plain_table = st.builds(
    lambda digest, name, comment: "\n".join(["[[keys]]", digest, *name, *comment]),
    digests,
    st.lists(names, max_size=1),
    st.sampled_from([[], ["# a comment"], [""]]),
)
junk = st.sampled_from(JUNK)
blocks = st.lists(st.one_of(table, table, table, junk), min_size=1, max_size=12)


def as_file(parts: list[str], crlf: bool, bom: bool, bad_byte: int | None) -> bytes:
    text = "\n".join(parts) + "\n"
    data = text.replace("\n", "\r\n" if crlf else "\n").encode()
    if bad_byte is not None:
        at = bad_byte % (len(data) + 1)
        data = data[:at] + b"\xff" + data[at:]
    return (b"\xef\xbb\xbf" if bom else b"") + data


@settings(max_examples=300, deadline=None)
@given(
    parts=blocks,
    crlf=st.booleans(),
    bom=st.booleans(),
    bad_byte=st.none() | st.integers(min_value=0),
    piece=st.sampled_from([1, 40, 200, 1_000]),
)
@example(
    parts=["[[keys]]\n" + 'digest = "sha256:' + "a" * 64 + '"'] * 3,
    crlf=False,
    bom=False,
    bad_byte=None,
    piece=1,
)
def test_pieces_give_what_the_whole_file_gives(
    parts: list[str], crlf: bool, bom: bool, bad_byte: int | None, piece: int
) -> None:
    data = as_file(parts, crlf, bom, bad_byte)
    with patch.object(keyfile, "_PIECE_BYTES", piece):
        pieces = keyfile._in_pieces(data)
    whole = keyfile._whole(data)
    if pieces is not None:
        assert whole == (pieces, None)


@settings(max_examples=100, deadline=None)
@given(tables=st.lists(plain_table, min_size=2, max_size=12), crlf=st.booleans(), bom=st.booleans())
def test_a_file_of_keys_tables_alone_is_parsed_in_pieces(
    tables: list[str], crlf: bool, bom: bool
) -> None:
    # The fast path is the one taken for what keygen writes (and hand edits of it).
    data = as_file(tables, crlf, bom, None)
    with patch.object(keyfile, "_PIECE_BYTES", 1):
        pieces = keyfile._in_pieces(data)
    assert pieces is not None
    assert pieces == tomllib.loads(data.decode("utf-8-sig"))["keys"]


@pytest.mark.parametrize("odd", JUNK + TRICKY)
@pytest.mark.parametrize("where", [0, 1, 3])
def test_every_odd_part_in_every_piece_gives_the_whole_file_answer(odd: str, where: int) -> None:
    # Each odd part at the start, in a middle piece and in the last piece.
    parts = [f'[[keys]]\ndigest = "sha256:{k:064x}"' for k in range(3)]
    parts.insert(where, odd)
    data = as_file(parts, False, False, None)
    with patch.object(keyfile, "_PIECE_BYTES", 1):
        pieces = keyfile._in_pieces(data)
    whole = keyfile._whole(data)
    if whole[1] is None:
        assert pieces in (None, whole[0])
    else:  # the whole file is refused: pieces leave it to the whole-file parse
        assert pieces is None


def test_a_small_file_is_parsed_whole() -> None:
    data = as_file(['[[keys]]\ndigest = "sha256:' + "a" * 64 + '"'] * 2, False, False, None)
    assert keyfile._in_pieces(data) is None  # under one piece: nothing to cut


def test_errors_and_labels_are_those_of_the_whole_file(tmp_path: Path) -> None:
    # Same keys, same labels, and the same error (its line and column) either way.
    good = [f'[[keys]]\ndigest = "sha256:{n:064x}"\nname = "k{n}"' for n in range(30)]
    bad = [*good[:20], '[[keys]]\ndigest = "sha256:' + "0" * 64 + '\nname = "broken"', *good[20:]]
    for parts in (good, bad):
        path = tmp_path / "keys.toml"
        path.write_bytes(as_file(parts, False, False, None))
        answers: list[tuple[str, object]] = []
        for piece in (1, 10**9):
            with patch.object(keyfile, "_PIECE_BYTES", piece):
                try:
                    answers.append(("keys", load_key_file(path)))
                except ConfigurationError as error:
                    answers.append(("error", str(error)))
        assert answers[0] == answers[1]
    assert answers[0][0] == "error"
    assert "line 62" in str(answers[0][1])


@pytest.mark.parametrize(
    "pasted",
    [
        'secret = "{key}"',  # a plain key in a field the file refuses
        'name = "{key}',  # an unterminated string: a syntax error in a later piece
        "# {key}\n\xff",  # bytes that are not UTF-8 in a later piece
    ],
)
def test_a_key_pasted_into_a_later_piece_reaches_no_error(tmp_path: Path, pasted: str) -> None:
    # The piecewise parse leaves every error to the whole-file parse: the
    # message names a place, never the text, and chains no decode error.
    key = "sk-live-PASTED-0123456789abcdefghij"
    parts = [f'[[keys]]\ndigest = "sha256:{k:064x}"' for k in range(20)]
    parts.insert(15, parts.pop(15) + "\n" + pasted.format(key=key))
    path = tmp_path / "keys.toml"
    path.write_bytes(
        "\n".join(parts).encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff")
    )
    with patch.object(keyfile, "_PIECE_BYTES", 1), pytest.raises(ConfigurationError) as raised:
        load_key_file(path)
    for name, text in error_texts(raised.value):
        assert key not in text, name
        assert "PASTED" not in text, name
