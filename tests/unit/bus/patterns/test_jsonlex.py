"""jsonlex.py: tokens, positions and syntax errors the way Jackson reports them."""

from __future__ import annotations

import pytest

from app.bus.patterns.jsonlex import JacksonLexer, JsonSyntaxError, Tok, char_desc


def tokens(text: str) -> list[tuple[Tok | None, int]]:
    """Every token with the column Jackson reports right after reading it."""
    lex = JacksonLexer(text)
    out: list[tuple[Tok | None, int]] = []
    while True:
        tok = lex.next_token()
        out.append((tok, lex.location()[1]))
        if tok is None:
            return out


def test_token_stream() -> None:
    lex = JacksonLexer('{"a": [1, 2.5, "s", true, false, null, {"b": {}}]}')
    seen = []
    while (tok := lex.next_token()) is not None:
        seen.append(tok)
    assert seen == [
        Tok.START_OBJECT, Tok.FIELD_NAME, Tok.START_ARRAY, Tok.INT, Tok.FLOAT, Tok.STRING,
        Tok.TRUE, Tok.FALSE, Tok.NULL, Tok.START_OBJECT, Tok.FIELD_NAME, Tok.START_OBJECT,
        Tok.END_OBJECT, Tok.END_OBJECT, Tok.END_ARRAY, Tok.END_OBJECT,
    ]  # fmt: skip


def test_after_a_field_name_the_value_start_is_already_read() -> None:
    # {"int": 42} -> FIELD_NAME with the number read: column 11 (AWS reports the same)
    lex = JacksonLexer('{"int": 42}')
    lex.next_token()
    assert lex.next_token() is Tok.FIELD_NAME
    assert lex.location() == (1, 11)
    assert lex.next_token() is Tok.INT
    assert lex.location() == (1, 11)


def test_a_string_is_read_to_its_end_only_on_demand() -> None:
    lex = JacksonLexer('{"string": "my-value"}')
    lex.next_token()
    lex.next_token()
    assert lex.next_token() is Tok.STRING
    assert lex.location() == (1, 13)  # just after the opening quote
    assert lex.get_text() == "my-value"
    assert lex.location() == (1, 22)


def test_get_text_of_structural_tokens_and_names() -> None:
    lex = JacksonLexer('{"k": []}')
    assert lex.next_token() is Tok.START_OBJECT
    assert lex.get_text() == "{"
    lex.next_token()
    assert lex.get_text() == "k"
    lex.next_token()
    assert lex.next_token() is Tok.END_ARRAY
    assert lex.get_text() == "]"


def test_escapes_and_surrogate_pairs() -> None:
    lex = JacksonLexer(r'["a\"b\\c\/\n\t\u00e9\ud83d\ude00"]')
    lex.next_token()
    lex.next_token()
    assert lex.get_text() == 'a"b\\c/\n\té\U0001f600'


def test_lines_and_columns() -> None:
    lex = JacksonLexer('{\n  "a":\r\n   1}')
    lex.next_token()
    lex.next_token()
    assert lex.location() == (3, 5)


def test_columns_count_utf16_units() -> None:
    lex = JacksonLexer('{"\U0001f600": 1}')
    lex.next_token()
    lex.next_token()
    # the emoji is two UTF-16 units: 8 units read, so column 9 (Python's index would say 8)
    assert lex.location() == (1, 9)


def test_root_number_consumes_one_space() -> None:
    lex = JacksonLexer("42 ")
    assert lex.next_token() is Tok.INT
    assert lex.offset == 3


def drain(lex: JacksonLexer) -> None:
    while lex.next_token() is not None:
        lex.get_text()


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        (
            "this is valid json but not a dict",
            "Unrecognized token 'this': was expecting (JSON String, Number, Array, Object or "
            "token 'null', 'true' or 'false')",
            5,
        ),
        (
            "{'bad': 'quotation'}",
            "Unexpected character (''' (code 39)): was expecting double-quote to start field name",
            2,
        ),
        (
            '{"not": closed mark"',
            "Unrecognized token 'closed': was expecting (JSON String, Number, Array, Object or "
            "token 'null', 'true' or 'false')",
            15,
        ),
        (
            '{"a": tru}',
            "Unrecognized token 'tru': was expecting (JSON String, Number, Array, "
            "Object or token 'null', 'true' or 'false')",
            10,
        ),
        (
            '{"a": truex}',
            "Unrecognized token 'truex': was expecting (JSON String, Number, "
            "Array, Object or token 'null', 'true' or 'false')",
            12,
        ),
        (
            '{"a" 1}',
            "Unexpected character ('1' (code 49)): was expecting a colon to separate "
            "field name and value",
            6,
        ),
        (
            '{"a": 1 "b": 2}',
            "Unexpected character ('\"' (code 34)): was expecting comma to separate Object entries",
            9,
        ),
        (
            "[1 2]",
            "Unexpected character ('2' (code 50)): was expecting comma to separate Array entries",
            4,
        ),
        ('{"a": [1,]}', "Unexpected character (']' (code 93)): expected a value", 10),
        (
            '{"a": 1,}',
            "Unexpected character ('}' (code 125)): was expecting double-quote to start field name",
            9,
        ),
        ('{"a": 01}', "Invalid numeric value: Leading zeroes not allowed", 9),
        (
            '{"a": -x}',
            "Unexpected character ('x' (code 120)) in numeric value: expected digit "
            "(0-9) to follow minus sign, for valid numeric value",
            8,
        ),
        (
            '{"a": 1.}',
            "Unexpected character ('}' (code 125)) in numeric value: Decimal point "
            "not followed by a digit",
            9,
        ),
        (
            '{"a": 1e}',
            "Unexpected character ('}' (code 125)) in numeric value: Exponent "
            "indicator not followed by a digit",
            9,
        ),
        (
            '{"a": NaN}',
            "Unrecognized token 'NaN': was expecting (JSON String, Number, Array, "
            "Object or token 'null', 'true' or 'false')",
            10,
        ),
        ('{"a": "x\\q"}', "Unrecognized character escape 'q' (code 113)", 11),
        (
            '{"a": "x\ny"}',
            "Illegal unquoted character ((CTRL-CHAR, code 10)): has to be "
            "escaped using backslash to be included in string value",
            10,
        ),
        ('{"a": "x', "Unexpected end-of-input: was expecting closing quote for a string value", 9),
        (
            '{"a": /* c */ 1}',
            "Unexpected character ('/' (code 47)): maybe a (non-standard) "
            "comment? (not recognized as one since Feature 'ALLOW_COMMENTS' not enabled for "
            "parser)",
            7,
        ),
        (
            "{\x01}",
            "Illegal character ((CTRL-CHAR, code 1)): only regular white space "
            "(\\r, \\n, \\t) is allowed between tokens",
            3,
        ),
        (
            '{"a": [1}',
            "Unexpected close marker '}': expected ']' (for Array starting at "
            '[Source: (String)"{"a": [1}"; line: 1, column: 7])',
            10,
        ),
    ],
)
def test_syntax_errors(text: str, message: str, column: int) -> None:
    with pytest.raises(JsonSyntaxError) as info:
        drain(JacksonLexer(text))
    assert info.value.message == message
    assert info.value.column == column
    assert info.value.location.startswith(f'[Source: (String)"{text}"')


def test_end_of_input_inside_an_object() -> None:
    with pytest.raises(JsonSyntaxError) as info:
        drain(JacksonLexer('{"a": ["x"]'))
    assert info.value.message == (
        "Unexpected end-of-input: expected close marker for Object (start marker at "
        '[Source: (String)"{"a": ["x"]"; line: 1, column: 1])'
    )
    assert info.value.column == 12


def test_nesting_depth_limit() -> None:
    with pytest.raises(JsonSyntaxError, match=r"depth \(4\) exceeds the maximum allowed \(3\)"):
        drain(JacksonLexer("[[[[1]]]]", max_depth=3))


def test_end_of_input_at_root_is_none() -> None:
    lex = JacksonLexer("  ")
    assert lex.next_token() is None


def test_char_desc() -> None:
    assert char_desc("a") == "'a' (code 97)"
    assert char_desc("\n") == "(CTRL-CHAR, code 10)"
    assert char_desc("é") == "'é' (code 233)"
    assert char_desc("€") == "'€' (code 8364 / 0x20ac)"
