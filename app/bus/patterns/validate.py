"""Pattern validation: event-ruler's ``JsonRuleCompiler`` checks, token for token, plus limits.

``check_text`` walks the pattern with ``JacksonLexer`` in exactly the order event-ruler's compiler
pulls tokens, so a bad pattern fails with the same reason *and* at the same line/column as on
AWS. Reasons that event-ruler raises outside the parser (``IllegalArgumentException``: CIDR and
single anything-but number problems) carry no location, like on AWS; a few reasons raised inside
a ``try`` that re-wraps parser errors carry the location twice, also like on AWS.

On top of that come the size and complexity limits in ``PatternLimits``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from app.bus.patterns.errors import InvalidEventPattern
from app.bus.patterns.jsonlex import JacksonLexer, JsonSyntaxError, Tok
from app.bus.patterns.matchers import IpError, WildcardError, ip_bytes, wildcard_segments

OR = "$or"
RESERVED_IN_OR = frozenset(
    {
        "exactly",
        "equals-ignore-case",
        "prefix",
        "suffix",
        "anything-but",
        "exists",
        "wildcard",
        "numeric",
        "cidr",
        "=",
        "<",
        "<=",
        ">",
        ">=",
        "regex",
        "not-wildcard",
        "not-equals-ignore-case",
        "date-after",
        "date-on-or-after",
        "date-before",
        "date-on-or-before",
        "in-date-range",
        "ip-address-in-range",
        "ip-address-not-in-range",
    }
)

FIVE_BILLION = Decimal("5E9")
_RANGE_ERROR = "Value must be between -5.0E9 and 5.0E9, inclusive"
_DECIMALS_ERROR = "Only values upto 6 decimals are supported"
_JAVA_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)


@dataclass(frozen=True)
class PatternLimits:
    """Limits checked when a pattern is parsed.

    ``max_length``: EventBridge's "Event pattern size" quota, 2048 characters by default and
    adjustable up to 4096 (the ``EventPattern`` length limit of the ``PutRule`` API).
    ``max_wildcards``: EventBridge rejects wildcard values that would make its state machine
    too complex ("Rule is too complex ..."); AWS's evaluator is not published, so like
    LocalStack we reject a value with more than five ``*``.
    ``max_depth`` and ``max_combinations`` have no published AWS value; they are smokehouse's own
    guards: nesting depth, and the number of alternatives ``$or`` expands a pattern into.
    """

    max_length: int = 2048
    max_depth: int = 100
    max_combinations: int = 1000
    max_wildcards: int = 5


DEFAULT_LIMITS = PatternLimits()


class _Barf(Exception):
    """A JsonParseException: reason plus the parser location at the time."""

    def __init__(self, reason: str, location: str, line: int, column: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location
        self.line = line
        self.column = column

    def full(self) -> str:
        return f"{self.reason}\n at {self.location}"


class _Plain(Exception):
    """An IllegalArgumentException: a reason without a location."""


@dataclass
class _State:
    limits: PatternLimits
    too_complex: bool = False


TOO_COMPLEX = (
    "Rule is too complex - try using fewer wildcard characters or fewer repeating "
    "character sequences after a wildcard character"
)


def _barf(lex: JacksonLexer, reason: str) -> NoReturn:
    line, column = lex.location()
    raise _Barf(reason, lex.location_string(), line, column)


def check_text(text: str, limits: PatternLimits = DEFAULT_LIMITS) -> None:
    """Raise ``InvalidEventPattern`` unless ``text`` is a pattern EventBridge accepts."""
    if len(text) > limits.max_length:
        raise InvalidEventPattern(
            f"Event pattern is {len(text)} characters long, the maximum is {limits.max_length}"
        )
    lex = JacksonLexer(text, max_depth=limits.max_depth)
    st = _State(limits)
    try:
        if lex.next_token() is not Tok.START_OBJECT:
            _barf(lex, "Filter is not an object")
        _parse_object(lex, in_or=False, st=st)
    except JsonSyntaxError as e:
        raise InvalidEventPattern(
            e.message, location=e.location, line=e.line, column=e.column
        ) from None
    except _Barf as e:
        raise InvalidEventPattern(
            e.reason, location=e.location, line=e.line, column=e.column
        ) from None
    except _Plain as e:
        raise InvalidEventPattern(str(e)) from None
    # Like event-ruler, whatever follows the closing brace of the pattern is never read.
    if st.too_complex:  # found when the rule is added to the machine, after compiling
        raise InvalidEventPattern(TOO_COMPLEX)


def _parse_object(lex: JacksonLexer, *, in_or: bool, st: _State) -> None:
    fields_present = False
    while lex.next_token() is not Tok.END_OBJECT:
        fields_present = True
        step = lex.current_name
        if step == OR:
            _parse_or(lex, st)
            continue
        if in_or and step in RESERVED_IN_OR:
            _barf(lex, f"{step} is Ruler reserved fieldName which cannot be used inside {OR}.")
        tok = lex.next_token()
        if tok is Tok.START_OBJECT:
            _parse_object(lex, in_or=in_or, st=st)
        elif tok is Tok.START_ARRAY:
            _write_rules(lex, st)
        else:
            _barf(lex, f'"{step}" must be an object or an array')
    if not fields_present:
        _barf(lex, "Empty objects are not allowed")


def _parse_or(lex: JacksonLexer, st: _State) -> None:
    if lex.next_token() is not Tok.START_ARRAY:
        _barf(lex, f"It must be an Array followed with {OR}.")
    count = 0
    while (tok := lex.next_token()) is not Tok.END_ARRAY:
        count += 1
        if tok is Tok.START_OBJECT:
            _parse_object(lex, in_or=True, st=st)
        else:
            _barf(lex, f"Only JSON object is allowed in array of {OR} relationship.")
    if count < 2:
        _barf(lex, f"There must have at least 2 Objects in {OR} relationship.")


def _write_rules(lex: JacksonLexer, st: _State) -> None:
    values = 0
    while (tok := lex.next_token()) is not Tok.END_ARRAY:
        if tok is Tok.START_OBJECT:
            _match_expression(lex, st)
        elif tok is Tok.STRING or (tok is not None and tok.is_numeric):
            lex.get_text()
        elif tok not in (Tok.NULL, Tok.TRUE, Tok.FALSE):
            _barf(lex, "Match value must be String, number, true, false, or null")
        values += 1
    if values == 0:
        _barf(lex, "Empty arrays are not allowed")


def _end_object(
    lex: JacksonLexer, reason: str = "Only one key allowed in match expression"
) -> None:
    if lex.next_token() is not Tok.END_OBJECT:
        _barf(lex, reason)


_TOO_MANY = "Too many elements in numeric expression"


def _string_operand(lex: JacksonLexer, reason: str) -> str:
    if lex.next_token() is not Tok.STRING:
        _barf(lex, reason)
    return lex.get_text()


def _match_expression(lex: JacksonLexer, st: _State) -> None:
    if lex.next_token() is not Tok.FIELD_NAME:
        _barf(lex, "Match expression name not found")
    op = lex.current_name
    if op == "exactly":
        _string_operand(lex, "exact match pattern must be a string")
        _end_object(lex)
    elif op in ("prefix", "suffix"):
        tok = lex.next_token()
        if tok is Tok.START_OBJECT:
            _ignore_case_operand(lex, op)
            return
        if tok is not Tok.STRING:
            _barf(lex, f"{op} match pattern must be a string")
        lex.get_text()
        _end_object(lex)
    elif op == "numeric":
        if lex.next_token() is not Tok.START_ARRAY:
            _barf(lex, "Value of numeric must be an array.")
        _numeric(lex)
        _end_object(lex, _TOO_MANY)
    elif op == "anything-but":
        _anything_but(lex, st)
    elif op == "exists":
        tok = lex.next_token()
        if tok is not Tok.TRUE and tok is not Tok.FALSE:
            _barf(lex, "exists match pattern must be either true or false.")
        _end_object(lex)
    elif op == "cidr":
        text = _string_operand(lex, "prefix match pattern must be a string")
        _cidr(text)
        _end_object(lex)
    elif op == "equals-ignore-case":
        _string_operand(lex, "equals-ignore-case match pattern must be a string")
        _end_object(lex)
    elif op == "wildcard":
        text = _string_operand(lex, "wildcard match pattern must be a string")
        _wildcard(lex, text, st)
        _end_object(lex)
    else:
        _barf(lex, f"Unrecognized match type {op}")


def _ignore_case_operand(lex: JacksonLexer, op: str) -> None:
    """``{"prefix": {"equals-ignore-case": "x"}}`` and the suffix form."""
    if lex.next_token() is not Tok.FIELD_NAME:
        _barf(lex, f"{op.capitalize()} expression name not found")
    if lex.current_name != "equals-ignore-case":
        _barf(lex, f"Unsupported {op} pattern: {lex.current_name}")
    _string_operand(lex, "equals-ignore-case match pattern must be a string")
    _end_object(lex)
    _end_object(lex)


def _wildcard(lex: JacksonLexer, text: str, st: _State) -> None:
    try:
        segments = wildcard_segments(text)
    except WildcardError as e:
        _barf(lex, str(e))
    if len(segments) - 1 > st.limits.max_wildcards:
        st.too_complex = True


def _anything_but(lex: JacksonLexer, st: _State) -> None:
    kind = "plain"
    tok = lex.next_token()
    if tok is Tok.START_OBJECT:
        if lex.next_token() is not Tok.FIELD_NAME:
            _barf(lex, "Anything-But expression name not found")
        kind = lex.current_name
        if kind not in ("equals-ignore-case", "prefix", "suffix", "wildcard"):
            _barf(lex, f"Unsupported anything-but pattern: {kind}")
        tok = lex.next_token()
    if tok not in (Tok.START_ARRAY, Tok.STRING, Tok.INT, Tok.FLOAT):
        _barf(lex, "Value of anything-but must be an array or single string/number value.")
    if tok is Tok.START_ARRAY:
        if kind == "plain":
            _anything_but_list(lex)
        else:
            _anything_but_set(lex, kind, st)
    elif kind == "plain":
        if tok is Tok.STRING:
            lex.get_text()
        else:
            try:
                check_number(lex.get_text())
            except ValueError as e:
                raise _Plain(str(e)) from None
    else:
        _anything_but_set_single(lex, kind, tok, st)
    _end_object(lex, _TOO_MANY)
    if kind != "plain":
        _end_object(lex, _TOO_MANY)


def _anything_but_list(lex: JacksonLexer) -> None:
    has_number = has_string = False
    try:
        while (tok := lex.next_token()) is not Tok.END_ARRAY:
            if tok is Tok.STRING:
                lex.get_text()
                has_string = True
            elif tok is not None and tok.is_numeric:
                check_number(lex.get_text())
                has_number = True
            else:
                _barf(lex, "Inside anything but list, start|null|boolean is not supported.")
    except ValueError as e:  # an IllegalArgumentException: re-thrown with one location
        _barf(lex, str(e))
    except _Barf as e:  # a JsonParseException: re-thrown with its location twice
        _barf(lex, e.full())
    if has_number == has_string:
        _barf(
            lex,
            "Inside anything but list, either all values are number or string, "
            "mixed type is not supported",
        )


def _wrong_type(kind: str) -> str:
    if kind == "equals-ignore-case":
        return (
            "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not "
            "supported."
        )
    if kind == "wildcard":
        return "wildcard match pattern must be a string"
    return "prefix/suffix match pattern must be a string"


def _anything_but_set(lex: JacksonLexer, kind: str, st: _State) -> None:
    texts: list[str] = []
    try:
        while (tok := lex.next_token()) is not Tok.END_ARRAY:
            if tok is Tok.STRING:
                text = lex.get_text()
                if kind in ("prefix", "suffix") and not text:
                    _barf(lex, "Null prefix/suffix not allowed")
                texts.append(text)
            else:
                _barf(lex, _wrong_type(kind))
    except _Barf as e:
        _barf(lex, e.full())
    if kind == "wildcard":
        for text in texts:
            _wildcard(lex, text, st)


def _anything_but_set_single(lex: JacksonLexer, kind: str, tok: Tok, st: _State) -> None:
    if tok is not Tok.STRING:
        _barf(lex, _wrong_type(kind))
    text = lex.get_text()
    if kind in ("prefix", "suffix") and not text:
        _barf(lex, "Null prefix/suffix not allowed")
    if kind == "wildcard":
        _wildcard(lex, text, st)


def _numeric(lex: JacksonLexer) -> None:
    if lex.next_token() is not Tok.STRING:
        _barf(lex, f"Invalid member in numeric match: {lex.get_text()}")
    operator = lex.get_text()
    tok = lex.next_token()
    name = "equals" if operator == "=" else operator
    if operator not in ("=", "<", "<=", ">", ">="):
        _barf(lex, f"Unrecognized numeric range operator: {operator}")
    if tok is None or not tok.is_numeric:
        _barf(lex, f"Value of {name} must be numeric")
    value = lex.get_text()
    nxt = lex.next_token()
    if operator in ("=", "<", "<="):
        if nxt is not Tok.END_ARRAY:
            _barf(lex, _TOO_MANY)
        try:
            if operator == "=":
                check_number(value)
            else:
                check_range(str(-FIVE_BILLION), value)
        except ValueError as e:
            _barf(lex, str(e))
        return
    if nxt is Tok.END_ARRAY:
        try:
            check_range(value, str(FIVE_BILLION))
        except ValueError as e:
            _barf(lex, str(e))
        return
    if nxt is not Tok.STRING:
        _barf(lex, f"Bad value in numeric range: {lex.get_text()}")
    top_operator = lex.get_text()
    if top_operator not in ("<", "<="):
        _barf(lex, f"Bad numeric range operator: {top_operator}")
    tok = lex.next_token()
    if tok is None or not tok.is_numeric:
        _barf(lex, f"Value of {top_operator} must be numeric")
    top = lex.get_text()
    if lex.next_token() is not Tok.END_ARRAY:
        _barf(lex, "Too many terms in numeric range expression")
    try:
        check_range(value, top)
    except ValueError as e:
        _barf(lex, str(e))


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the lexer only yields valid numbers
        raise ValueError(f"Not a number: {text}") from None


def check_number(text: str) -> Decimal:
    """event-ruler's ComparableNumber limits: within ±5e9 and at most six decimals."""
    number = _decimal(text)
    if number < -FIVE_BILLION or number > FIVE_BILLION:
        raise ValueError(_RANGE_ERROR)
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        raise ValueError(_DECIMALS_ERROR)
    return number


def check_range(bottom: str, top: str) -> None:
    """event-ruler's ``Range``: open-ended ranges run to ±5e9, so the bottom must be below."""
    if _decimal(bottom) >= _decimal(top):
        raise ValueError("Bottom must be less than top")
    check_number(bottom)
    check_number(top)


def _java_split_slash(text: str) -> list[str]:
    parts = text.split("/")
    while parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()
    return parts


def _cidr(text: str) -> None:
    try:
        parse_cidr(text)
    except ValueError as e:
        raise _Plain(str(e)) from None


def parse_cidr(text: str) -> tuple[int, int, int]:
    """``(bits, lo, hi)`` of a ``cidr`` operand, with event-ruler's checks and messages."""
    parts = _java_split_slash(text)
    if len(parts) != 2:
        raise ValueError("Malformed CIDR, one '/' required")
    if not _JAVA_INT.fullmatch(parts[1]) or not -(2**31) <= int(parts[1]) < 2**31:
        raise ValueError("Malformed CIDR, mask bits must be an integer")
    mask = int(parts[1])
    if mask < 0:
        raise ValueError("Malformed CIDR, mask bits must not be negative")
    try:
        bits, value = ip_bytes(parts[0])
    except IpError as e:
        raise ValueError(str(e)) from None
    if bits == 32 and mask > 31:
        raise ValueError("IPv4 mask bits must be < 32")
    if bits == 128 and mask > 127:
        raise ValueError("IPv6 mask bits must be < 128")
    return bits, value, value | ((1 << (bits - mask)) - 1)


def combinations(obj: Mapping[str, Any], cap: int) -> int:
    """How many alternatives ``$or`` expands ``obj`` into (stops counting above ``cap``)."""
    total = 1
    for key, value in obj.items():
        if key == OR and isinstance(value, list):
            count = 0
            for sub in value:
                count += combinations(sub, cap)
                if count > cap:
                    return cap + 1
        elif isinstance(value, Mapping):
            count = combinations(value, cap)
        else:
            continue
        total *= count
        if total > cap:
            return cap + 1
    return total


def check_limits(obj: Mapping[str, Any], limits: PatternLimits) -> None:
    count = combinations(obj, limits.max_combinations)
    if count > limits.max_combinations:
        raise InvalidEventPattern(
            "Rule is too complex - $or expands it into more than "
            f"{limits.max_combinations} combinations"
        )
