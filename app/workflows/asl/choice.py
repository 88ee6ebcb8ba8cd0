"""Choice rules (JSONPath): comparison operators, ``And``/``Or``/``Not`` and ``Default``.

Semantics (ASL spec "Choice Rules", Step Functions developer guide "Choice workflow state"):

* a comparison whose operand has the wrong type is simply false (``"StringEquals"`` on a number);
* ``Variable`` (or the ``...Path`` operand) must exist, except for ``IsPresent``; a miss is
  ``States.Runtime`` with ``Invalid path '$.x': The choice state's condition path references an
  invalid value.`` (the cause Step Functions reports);
* strings compare by UTF-16 code units (as Java does), numbers numerically (``1 == 1.0``),
  timestamps as instants (RFC 3339 with an uppercase ``T`` and ``Z`` or an offset);
* ``StringMatches`` knows only ``*``; ``\\*`` is a literal star and ``\\\\`` a backslash;
* when nothing matches and there is no ``Default`` the state fails with
  ``States.NoChoiceMatched``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, TypeAlias

from app.common.jsonpath import MISSING, JsonPath
from app.workflows.asl import errors
from app.workflows.asl.varpath import parse_path, read

#: operator -> the kind of operand it takes
OPERATORS: Final[dict[str, str]] = {
    **{f"String{op}": "string" for op in ("Equals", "LessThan", "GreaterThan")},
    **{f"String{op}": "string" for op in ("LessThanEquals", "GreaterThanEquals")},
    "StringMatches": "string",
    **{
        f"Numeric{op}": "number"
        for op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
    },
    "BooleanEquals": "boolean",
    **{
        f"Timestamp{op}": "timestamp"
        for op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
    },
    **{f"Is{kind}": "flag" for kind in ("Null", "Present", "Numeric", "String", "Boolean")},
    "IsTimestamp": "flag",
}
for _op in [o for o in OPERATORS if not o.startswith("Is") and o != "StringMatches"]:
    OPERATORS[f"{_op}Path"] = "path"
del _op

NO_MATCH_CAUSE: Final = (
    "Failed to transition out of the state. The state does not point to a next state."
)

_TIMESTAMP_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})"
)


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as Step Functions accepts it, or ``None``."""
    if not isinstance(value, str):
        return None
    m = _TIMESTAMP_RE.fullmatch(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = (m.group(7) or "")[:6].ljust(6, "0")
    zone = m.group(8)
    if zone == "Z":
        tz: timezone = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=tz)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def string_matches(value: str, pattern: str) -> bool:
    return _glob(pattern).fullmatch(value) is not None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _utf16(s: str) -> bytes:
    return s.encode("utf-16-be", "surrogatepass")


def _cmp(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def _ordered(kind: str, left: Any, right: Any) -> int | None:
    """-1/0/1 when both operands are of ``kind``; ``None`` (false) otherwise."""
    if kind == "string":
        if not isinstance(left, str) or not isinstance(right, str):
            return None
        return _cmp(_utf16(left), _utf16(right))
    if kind == "number":
        if not _is_number(left) or not _is_number(right):
            return None
        return _cmp(left, right)
    ta, tb = parse_timestamp(left), parse_timestamp(right)
    if ta is None or tb is None:
        return None
    return _cmp(ta, tb)


_RELATION: Final[dict[str, Callable[[int], bool]]] = {
    "Equals": lambda c: c == 0,
    "LessThan": lambda c: c < 0,
    "GreaterThan": lambda c: c > 0,
    "LessThanEquals": lambda c: c <= 0,
    "GreaterThanEquals": lambda c: c >= 0,
}


_KINDS: Final = (("String", "string"), ("Numeric", "number"), ("Timestamp", "timestamp"))


@dataclass(frozen=True, slots=True)
class Comparison:
    variable: JsonPath
    operator: str
    operand: Any  # a literal, or a JsonPath for the ``...Path`` operators


@dataclass(frozen=True, slots=True)
class BoolRule:
    op: str  # "And" | "Or"
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class NotRule:
    rule: Rule


Rule: TypeAlias = Comparison | BoolRule | NotRule


@dataclass(frozen=True, slots=True)
class ChoiceBranch:
    rule: Rule
    next: str


def compile_rule(raw: dict[str, Any]) -> Rule:
    """Compile one (validated) rule; raises ``ValueError`` on a malformed one."""
    if "And" in raw or "Or" in raw:
        op = "And" if "And" in raw else "Or"
        return BoolRule(op, tuple(compile_rule(r) for r in raw[op]))
    if "Not" in raw:
        return NotRule(compile_rule(raw["Not"]))
    operators = [k for k in raw if k in OPERATORS]
    if len(operators) != 1 or not isinstance(raw.get("Variable"), str):
        raise ValueError("a comparison needs a Variable and exactly one operator")
    op = operators[0]
    operand = raw[op]
    if OPERATORS[op] == "path":
        operand = parse_path(operand)
    return Comparison(parse_path(raw["Variable"]), op, operand)


def compile_choices(raw_choices: list[dict[str, Any]]) -> tuple[ChoiceBranch, ...]:
    return tuple(ChoiceBranch(compile_rule(c), c["Next"]) for c in raw_choices)


def _invalid_path(path: JsonPath) -> errors.StatesError:
    return errors.runtime_error(
        f"Invalid path '{path.text}': The choice state's condition path references an invalid "
        "value."
    )


def _read(path: JsonPath, data: Any, context: Any) -> Any:
    return read(path, data, context)


def evaluate(rule: Rule, data: Any, context: Any = None) -> bool:
    if isinstance(rule, BoolRule):
        if rule.op == "And":
            return all(evaluate(r, data, context) for r in rule.rules)
        return any(evaluate(r, data, context) for r in rule.rules)
    if isinstance(rule, NotRule):
        return not evaluate(rule.rule, data, context)
    value = _read(rule.variable, data, context)
    op = rule.operator
    if op == "IsPresent":
        return bool((value is not MISSING) == rule.operand)
    if value is MISSING:
        raise _invalid_path(rule.variable)
    if op.startswith("Is"):
        if op == "IsNull":
            actual = value is None
        elif op == "IsNumeric":
            actual = _is_number(value)
        elif op == "IsString":
            actual = isinstance(value, str)
        elif op == "IsBoolean":
            actual = isinstance(value, bool)
        else:
            actual = parse_timestamp(value) is not None
        return bool(actual == rule.operand)
    operand = rule.operand
    name = op
    if op.endswith("Path"):
        assert isinstance(operand, JsonPath)
        operand = _read(operand, data, context)
        if operand is MISSING:
            raise _invalid_path(rule.operand)
        name = op[: -len("Path")]
    if name == "BooleanEquals":
        return isinstance(value, bool) and isinstance(operand, bool) and value == operand
    if name == "StringMatches":
        return (
            isinstance(value, str) and isinstance(operand, str) and string_matches(value, operand)
        )
    prefix, kind = next((p, k) for p, k in _KINDS if name.startswith(p))
    cmp = _ordered(kind, value, operand)
    relation = name[len(prefix) :]
    return cmp is not None and bool(_RELATION[relation](cmp))


def choose(
    branches: tuple[ChoiceBranch, ...], default: str | None, data: Any, context: Any = None
) -> str:
    """The first matching rule's ``Next``, else ``Default``, else ``States.NoChoiceMatched``."""
    for branch in branches:
        if evaluate(branch.rule, data, context):
            return branch.next
    if default is not None:
        return default
    raise errors.StatesError(errors.NO_CHOICE_MATCHED, NO_MATCH_CAUSE)
