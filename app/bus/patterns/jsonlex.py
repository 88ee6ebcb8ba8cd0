"""A JSON pull parser that behaves like Jackson's ``ReaderBasedJsonParser`` where it shows.

EventBridge compiles patterns with event-ruler, which drives Jackson token by token and reports
errors at Jackson's *current location*. To give the same ``line``/``column`` as AWS we reproduce
how far Jackson has read at each token:

* after a field name Jackson has already read the colon and the *start* of the value: the whole
  number or literal, only the opening quote of a string, or the bracket of an array/object;
* a string value is read to its closing quote only when its text is asked for (``get_text``);
* columns are 1-based and count UTF-16 code units, like Java strings;
* errors about an unexpected character point *at* that character.

Only standard JSON is accepted (no comments, no single quotes, no NaN, no trailing commas), as
with Jackson's default features.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.bus.patterns.errors import location_text


class Tok(enum.Enum):
    START_OBJECT = "{"
    END_OBJECT = "}"
    START_ARRAY = "["
    END_ARRAY = "]"
    FIELD_NAME = "FIELD_NAME"
    STRING = "VALUE_STRING"
    INT = "VALUE_NUMBER_INT"
    FLOAT = "VALUE_NUMBER_FLOAT"
    TRUE = "true"
    FALSE = "false"
    NULL = "null"

    @property
    def is_numeric(self) -> bool:
        return self is Tok.INT or self is Tok.FLOAT


class JsonSyntaxError(Exception):
    """A parse error: Jackson's message plus the 1-based position it reports."""

    def __init__(self, message: str, line: int, column: int, location: str) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.location = location


@dataclass
class _Context:
    kind: str  # "root", "object" or "array"
    line: int
    column: int
    index: int = -1

    def expect_comma(self) -> bool:
        self.index += 1
        return self.kind != "root" and self.index > 0

    @property
    def type_desc(self) -> str:
        return {"root": "root", "object": "Object", "array": "Array"}[self.kind]


_WS = frozenset(" \t\n\r")
_VALID_TOKENS = "(JSON String, Number, Array, Object or token 'null', 'true' or 'false')"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_MAX_ERROR_TOKEN = 256


def char_desc(ch: str) -> str:
    """Jackson's ``_getCharDesc``."""
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"(CTRL-CHAR, code {code})"
    if code > 255:
        return f"'{ch}' (code {code} / 0x{code:x})"
    return f"'{ch}' (code {code})"


def _is_identifier_part(ch: str) -> bool:
    # Approximates Java's Character.isJavaIdentifierPart.
    return ch.isalnum() or ch in "$_"


class JacksonLexer:
    """Pull parser over ``text``; see the module docstring for the position rules."""

    def __init__(self, text: str, *, max_depth: int = 1000) -> None:
        self.text = text
        self._n = len(text)
        self._i = 0
        self._row = 1
        self._row_start = 0
        self._max_depth = max_depth
        self._ctx: list[_Context] = [_Context("root", 1, 1, -1)]
        self._cur: Tok | None = None
        self._after_name: Tok | None = None
        self._incomplete = False
        self._value = ""  # text of the current scalar token
        self._tok_line = 1
        self._tok_col = 1
        self.current_name = ""

    # -- positions --------------------------------------------------------------------------
    def _column(self, index: int) -> int:
        segment = self.text[self._row_start : index]
        if segment.isascii():
            return index - self._row_start + 1
        return len(segment.encode("utf-16-le")) // 2 + 1

    def location(self) -> tuple[int, int]:
        return self._row, self._column(self._i)

    def location_string(self) -> str:
        line, column = self.location()
        return location_text(self.text, line, column)

    def _error(self, message: str, *, minus_one: bool = False) -> JsonSyntaxError:
        line, column = self.location()
        if minus_one:
            column -= 1
        return JsonSyntaxError(message, line, column, location_text(self.text, line, column))

    def _unexpected(self, ch: str, comment: str | None) -> JsonSyntaxError:
        message = f"Unexpected character ({char_desc(ch)})"
        if comment:
            message += ": " + comment
        return self._error(message, minus_one=True)

    def _eof(self, comment: str) -> JsonSyntaxError:
        return self._error("Unexpected end-of-input" + comment)

    # -- whitespace -------------------------------------------------------------------------
    def _skip_ws_or_end(self) -> str | None:
        """Skip white space, return the next character (consumed) or None at the end."""
        text, n = self.text, self._n
        while self._i < n:
            ch = text[self._i]
            self._i += 1
            if ch == "\n":
                self._row += 1
                self._row_start = self._i
            elif ch == "\r":
                if self._i < n and text[self._i] == "\n":
                    self._i += 1
                self._row += 1
                self._row_start = self._i
            elif ch == " " or ch == "\t":
                continue
            elif ch < " ":
                raise self._error(
                    f"Illegal character ({char_desc(ch)}): only regular white space "
                    "(\\r, \\n, \\t) is allowed between tokens"
                )
            elif ch == "/":
                raise self._unexpected(
                    ch,
                    "maybe a (non-standard) comment? (not recognized as one since Feature "
                    "'ALLOW_COMMENTS' not enabled for parser)",
                )
            else:
                return ch
        return None

    def _skip_ws_required(self, what: str) -> str:
        ch = self._skip_ws_or_end()
        if ch is None:
            raise self._eof(what)
        return ch

    # -- tokens -----------------------------------------------------------------------------
    def next_token(self) -> Tok | None:
        if self._cur is Tok.FIELD_NAME:
            tok = self._after_name
            self._after_name = None
            if tok is Tok.START_OBJECT or tok is Tok.START_ARRAY:
                self._push(tok)
            self._cur = tok
            return tok
        if self._incomplete:
            self._finish_string()
        ch = self._skip_ws_or_end()
        if ch is None:
            ctx = self._ctx[-1]
            if ctx.kind != "root":
                start = location_text(self.text, ctx.line, ctx.column)
                raise self._eof(
                    f": expected close marker for {ctx.type_desc} (start marker at {start})"
                )
            self._cur = None
            return None
        if ch == "]" or ch == "}":
            return self._close_scope(ch)
        ctx = self._ctx[-1]
        if ctx.expect_comma():
            if ch != ",":
                raise self._unexpected(
                    ch, f"was expecting comma to separate {ctx.type_desc} entries"
                )
            ch = self._skip_ws_required(f" within/between {ctx.type_desc} entries")
        in_object = ctx.kind == "object"
        if in_object:
            if ch != '"':
                raise self._unexpected(ch, "was expecting double-quote to start field name")
            self.current_name = self._read_string(name=True)
            self._cur = Tok.FIELD_NAME
            ch = self._skip_colon()
        self._tok_line, self._tok_col = self._row, self._column(self._i - 1)
        tok = self._start_value(ch)
        if in_object:
            self._after_name = tok
            return Tok.FIELD_NAME
        if tok is Tok.START_OBJECT or tok is Tok.START_ARRAY:
            self._push(tok)
        self._cur = tok
        return tok

    def _push(self, tok: Tok) -> None:
        kind = "object" if tok is Tok.START_OBJECT else "array"
        if len(self._ctx) > self._max_depth:
            raise self._error(
                f"Document nesting depth ({len(self._ctx)}) exceeds the maximum allowed "
                f"({self._max_depth})"
            )
        self._ctx.append(_Context(kind, self._tok_line, self._tok_col))

    def _close_scope(self, ch: str) -> Tok:
        ctx = self._ctx[-1]
        if ctx.kind != ("array" if ch == "]" else "object"):
            expected = "}" if ch == "]" else "]"
            start = location_text(self.text, ctx.line, ctx.column)
            raise self._error(
                f"Unexpected close marker '{ch}': expected '{expected}' "
                f"(for {ctx.type_desc} starting at {start})"
            )
        self._ctx.pop()
        self._cur = Tok.END_OBJECT if ch == "}" else Tok.END_ARRAY
        return self._cur

    def _skip_colon(self) -> str:
        ch = self._skip_ws_or_end()
        if ch != ":":
            if ch is None:
                raise self._eof(" within/between Object entries")
            raise self._unexpected(ch, "was expecting a colon to separate field name and value")
        return self._skip_ws_required(" within/between Object entries")

    def _start_value(self, ch: str) -> Tok:
        self._value = ch
        if ch == '"':
            self._incomplete = True
            return Tok.STRING
        if ch == "[":
            return Tok.START_ARRAY
        if ch == "{":
            return Tok.START_OBJECT
        if ch == "]" or ch == "}":
            raise self._unexpected(ch, "expected a value")
        if ch == "t":
            self._match_literal("true")
            return Tok.TRUE
        if ch == "f":
            self._match_literal("false")
            return Tok.FALSE
        if ch == "n":
            self._match_literal("null")
            return Tok.NULL
        if ch == "-" or "0" <= ch <= "9":
            return self._read_number(ch)
        if ch.isalpha() or ch in "$_":
            raise self._invalid_token(ch)
        raise self._unexpected(ch, "expected a valid value " + _VALID_TOKENS)

    def _invalid_token(self, matched: str) -> JsonSyntaxError:
        token = matched
        while self._i < self._n and _is_identifier_part(self.text[self._i]):
            token += self.text[self._i]
            self._i += 1
            if len(token) >= _MAX_ERROR_TOKEN:
                token += "..."
                break
        return self._error(f"Unrecognized token '{token}': was expecting {_VALID_TOKENS}")

    def _match_literal(self, word: str) -> None:
        start = self._i - 1
        for offset in range(1, len(word)):
            pos = start + offset
            if pos >= self._n or self.text[pos] != word[offset]:
                self._i = pos
                raise self._invalid_token(word[:offset])
        self._i = start + len(word)
        if self._i < self._n and _is_identifier_part(self.text[self._i]):
            raise self._invalid_token(word)
        self._value = word

    def _read_number(self, first: str) -> Tok:
        text, n = self.text, self._n
        start = self._i - 1
        i = self._i
        if first == "-":
            if i >= n:
                self._i = i
                raise self._eof(" in a Number value")
            ch = text[i]
            if not "0" <= ch <= "9":
                self._i = i + 1
                raise self._unexpected_number_char(
                    ch, "expected digit (0-9) to follow minus sign, for valid numeric value"
                )
        int_start = i if first == "-" else start
        j = int_start
        while j < n and "0" <= text[j] <= "9":
            j += 1
        if j - int_start > 1 and text[int_start] == "0":
            self._i = int_start + 2
            raise self._error("Invalid numeric value: Leading zeroes not allowed")
        is_float = False
        if j < n and text[j] == ".":
            is_float = True
            j += 1
            k = j
            while j < n and "0" <= text[j] <= "9":
                j += 1
            if j == k:
                self._i = j + 1
                raise self._unexpected_number_char(
                    text[j] if j < n else " ", "Decimal point not followed by a digit"
                )
        if j < n and text[j] in "eE":
            is_float = True
            j += 1
            if j < n and text[j] in "+-":
                j += 1
            k = j
            while j < n and "0" <= text[j] <= "9":
                j += 1
            if j == k:
                self._i = j + 1
                raise self._unexpected_number_char(
                    text[j] if j < n else " ", "Exponent indicator not followed by a digit"
                )
        self._i = j
        if len(self._ctx) == 1 and j < n and text[j] in _WS:
            self._i = j + 1  # Jackson's _verifyRootSpace consumes one space at root level
        self._value = text[start:j]
        return Tok.FLOAT if is_float else Tok.INT

    def _unexpected_number_char(self, ch: str, comment: str) -> JsonSyntaxError:
        return self._error(
            f"Unexpected character ({char_desc(ch)}) in numeric value: {comment}", minus_one=True
        )

    def _read_string(self, *, name: bool) -> str:
        """Read a string whose opening quote is consumed; leave the position after the close."""
        text, n = self.text, self._n
        i = self._i
        parts: list[str] = []
        run = i
        while True:
            if i >= n:
                self._i = i
                what = "name" if name else "a string value"
                raise self._eof(f": was expecting closing quote for {what}")
            ch = text[i]
            if ch == '"':
                parts.append(text[run:i])
                self._i = i + 1
                return "".join(parts)
            if ch == "\\":
                parts.append(text[run:i])
                i += 1
                if i >= n:
                    self._i = i
                    raise self._eof(" in character escape sequence")
                esc = text[i]
                if esc == "u":
                    digits = text[i + 1 : i + 5]
                    for pos, digit in enumerate(digits):
                        if digit not in "0123456789abcdefABCDEF":
                            self._i = i + 2 + pos
                            raise self._unexpected(
                                digit, "expected a hex-digit for character escape sequence"
                            )
                    if len(digits) < 4:
                        self._i = n
                        raise self._eof(" in character escape sequence")
                    parts.append(chr(int(digits, 16)))
                    i += 5
                elif esc in _ESCAPES:
                    parts.append(_ESCAPES[esc])
                    i += 1
                else:
                    self._i = i + 1
                    raise self._error(f"Unrecognized character escape {char_desc(esc)}")
                run = i
                continue
            if ch < " ":
                self._i = i + 1
                what = "name" if name else "string value"
                raise self._error(
                    f"Illegal unquoted character ({char_desc(ch)}): has to be escaped using "
                    f"backslash to be included in {what}"
                )
            i += 1

    def _finish_string(self) -> None:
        self._incomplete = False
        value = self._read_string(name=False)
        # a surrogate pair written as two \\u escapes is one code point
        if not value.isascii() and _pairs_ok(value):
            value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        self._value = value

    # -- token accessors --------------------------------------------------------------------
    def get_text(self) -> str:
        """Jackson's ``getText()``: finishes a pending string token."""
        tok = self._cur
        if tok is Tok.FIELD_NAME:
            return self.current_name
        if tok is Tok.STRING and self._incomplete:
            self._finish_string()
        if tok is None:
            return "null"
        if tok in (Tok.START_OBJECT, Tok.END_OBJECT, Tok.START_ARRAY, Tok.END_ARRAY):
            return str(tok.value)
        return self._value

    @property
    def current_token(self) -> Tok | None:
        return self._cur

    @property
    def offset(self) -> int:
        """Index into ``text`` of the next unread character."""
        return self._i


def _pairs_ok(value: str) -> bool:
    """True if every surrogate in ``value`` is part of a well-formed pair."""
    i = 0
    while i < len(value):
        c = value[i]
        if "\ud800" <= c <= "\udbff":
            if i + 1 < len(value) and "\udc00" <= value[i + 1] <= "\udfff":
                i += 2
                continue
            return False
        if "\udc00" <= c <= "\udfff":
            return False
        i += 1
    return True
