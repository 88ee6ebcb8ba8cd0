"""Intrinsic functions (``States.Format(...)`` & co.) for JSONPath payload templates.

Arguments are string literals in single quotes (``\\`` escapes ``'``, ``{``, ``}`` and ``\\``),
numbers, ``true``/``false``/``null``, paths (``$.x``, ``$$.Execution.Id``) and nested calls.

Failures, as Step Functions reports them (cause wording from executions observed on AWS):

* a path argument that matches nothing is ``States.Runtime`` with the cause ``The function
  '<whole expression>' had the following error: The JsonPath argument for the field '<path>'
  could not be found in the input '<input>'``;
* an argument that breaks a function's documented rules (wrong type, out of range, bad base64,
  ...) is ``States.IntrinsicFailure`` (ASL spec, Appendix A), with the same cause prefix.

Randomness (``States.MathRandom`` without a seed, ``States.UUID``) comes from the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from app.common.jsonpath import MISSING, JsonPath, JsonPathError, json_equal
from app.workflows.asl import errors, varpath
from app.workflows.asl.varpath import parse_path, read


class IntrinsicSyntaxError(ValueError):
    """The text is not a well-formed intrinsic function call."""


@dataclass(frozen=True, slots=True)
class StrArg:
    value: str  # escapes resolved
    raw: str  # as written between the quotes (``States.Format`` needs ``\{`` to stay literal)


@dataclass(frozen=True, slots=True)
class LitArg:
    value: Any  # number, bool or None


@dataclass(frozen=True, slots=True)
class PathArg:
    path: JsonPath


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # e.g. "States.Format"
    args: tuple[Arg, ...]
    text: str


Arg: TypeAlias = StrArg | LitArg | PathArg | Call

#: name -> (min args, max args or None)
ARITY: Final[dict[str, tuple[int, int | None]]] = {
    "States.Format": (1, None),
    "States.StringToJson": (1, 1),
    "States.JsonToString": (1, 1),
    "States.Array": (0, None),
    "States.ArrayPartition": (2, 2),
    "States.ArrayContains": (2, 2),
    "States.ArrayRange": (3, 3),
    "States.ArrayGetItem": (2, 2),
    "States.ArrayLength": (1, 1),
    "States.ArrayUnique": (1, 1),
    "States.Base64Encode": (1, 1),
    "States.Base64Decode": (1, 1),
    "States.Hash": (2, 2),
    "States.JsonMerge": (3, 3),
    "States.MathRandom": (2, 3),
    "States.MathAdd": (2, 2),
    "States.StringSplit": (2, 2),
    "States.UUID": (0, 0),
}

HASH_ALGORITHMS: Final = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}

MAX_NESTING: Final = 10
_INT32_MIN: Final = -2147483648
_INT32_MAX: Final = 2147483647
_MAX_BASE64_CHARS: Final = 10000
_MAX_RANGE_ITEMS: Final = 1000


# --- parsing --------------------------------------------------------------------------------------


def looks_like_intrinsic(text: Any) -> bool:
    return isinstance(text, str) and text.lstrip().startswith("States.")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, what: str) -> IntrinsicSyntaxError:
        return IntrinsicSyntaxError(
            f"Invalid intrinsic function {self.text!r}: {what} at position {self.pos}"
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.peek() in (" ", "\t", "\n", "\r"):
            self.pos += 1

    def call(self, depth: int) -> Call:
        if depth > MAX_NESTING:
            raise self.error(f"more than {MAX_NESTING} nested intrinsic functions")
        start = self.pos
        while self.pos < len(self.text) and (self.peek().isalnum() or self.peek() in "._"):
            self.pos += 1
        name = self.text[start : self.pos]
        if name not in ARITY:
            raise self.error(f"unknown function {name!r}")
        self.skip_ws()
        if self.peek() != "(":
            raise self.error("expected '('")
        self.pos += 1
        args: list[Arg] = []
        self.skip_ws()
        if self.peek() == ")":
            self.pos += 1
        else:
            while True:
                args.append(self.arg(depth))
                self.skip_ws()
                ch = self.peek()
                self.pos += 1
                if ch == ")":
                    break
                if ch != ",":
                    self.pos -= 1
                    raise self.error("expected ',' or ')'")
        low, high = ARITY[name]
        if len(args) < low or (high is not None and len(args) > high):
            expected = str(low) if low == high else f"{low}..{high if high is not None else 'n'}"
            raise self.error(f"{name} takes {expected} arguments, got {len(args)}")
        return Call(name, tuple(args), self.text[start : self.pos])

    def arg(self, depth: int) -> Arg:
        self.skip_ws()
        ch = self.peek()
        if ch == "'":
            return self.string()
        if ch == "$":
            return self.path()
        if self.text.startswith("States.", self.pos):
            return self.call(depth + 1)
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return LitArg(value)
        start = self.pos
        while self.pos < len(self.text) and self.peek() not in ",) \t\n\r":
            self.pos += 1
        token = self.text[start : self.pos]
        try:
            number = json.loads(token)
        except ValueError:
            number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            self.pos = start
            raise self.error("expected a string, a number, a path or a function")
        return LitArg(number)

    def string(self) -> StrArg:
        self.pos += 1
        start = self.pos
        value: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.error("unterminated string")
            self.pos += 1
            if ch == "\\":
                nxt = self.peek()
                if nxt == "":
                    raise self.error("dangling escape")
                value.append(nxt)
                self.pos += 1
            elif ch == "'":
                return StrArg("".join(value), self.text[start : self.pos - 1])
            else:
                value.append(ch)

    def path(self) -> PathArg:
        start = self.pos
        depth = 0
        quote = ""
        while self.pos < len(self.text):
            ch = self.peek()
            if quote:
                if ch == "\\":
                    self.pos += 1
                elif ch == quote:
                    quote = ""
            elif ch in ("'", '"'):
                quote = ch
            elif ch in "[(":
                depth += 1
            elif ch in "])":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                break
            self.pos += 1
        text = self.text[start : self.pos].strip()
        try:
            return PathArg(parse_path(text))
        except JsonPathError as exc:
            raise self.error(str(exc)) from exc


def parse_intrinsic(text: str) -> Call:
    """Parse ``States.X(...)``; raises :class:`IntrinsicSyntaxError`."""
    parser = _Parser(text.strip())
    call = parser.call(1)
    parser.skip_ws()
    if parser.pos != len(parser.text):
        raise parser.error("unexpected text after the function call")
    return call


# --- evaluation -----------------------------------------------------------------------------------


class _IntrinsicError(Exception):
    def __init__(self, error: str, detail: str):
        super().__init__(detail)
        self.error = error
        self.detail = detail


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def java_round(x: float) -> int:
    """``Math.round``: half-up towards positive infinity (-2.5 -> -2, 2.5 -> 3)."""
    return math.floor(x + 0.5)


@dataclass(frozen=True, slots=True)
class IntrinsicContext:
    """What an evaluation can see: the payload input, the context object and the randomness."""

    data: Any
    context: Any
    random: Callable[[], float]
    uuid: Callable[[], str]


def evaluate(call: Call, ctx: IntrinsicContext) -> Any:
    """Evaluate a parsed call; raises :class:`~app.workflows.asl.errors.StatesError`."""
    try:
        return _eval_call(call, ctx)
    except _IntrinsicError as failure:
        raise errors.StatesError(
            failure.error,
            f"The function '{call.text}' had the following error: {failure.detail}",
        ) from None


def evaluate_text(text: str, ctx: IntrinsicContext) -> Any:
    try:
        call = parse_intrinsic(text)
    except IntrinsicSyntaxError as exc:
        raise errors.StatesError(errors.INTRINSIC_FAILURE, str(exc)) from None
    return evaluate(call, ctx)


def _eval_arg(arg: Arg, ctx: IntrinsicContext) -> Any:
    if isinstance(arg, StrArg):
        return arg.value
    if isinstance(arg, LitArg):
        return arg.value
    if isinstance(arg, PathArg):
        value = read(arg.path, ctx.data, ctx.context)
        if value is MISSING:
            source = varpath.source(arg.path, ctx.data, ctx.context)
            source = None if source is MISSING else source
            raise _IntrinsicError(
                errors.RUNTIME,
                f"The JsonPath argument for the field '{arg.path.text}' could not be found in "
                f"the input '{_compact(source)}'",
            )
        return value
    return _eval_call(arg, ctx)


def _fail(detail: str) -> _IntrinsicError:
    return _IntrinsicError(errors.INTRINSIC_FAILURE, detail)


def _integer(value: Any, what: str, *, int32: bool = False) -> int:
    if not _is_number(value):
        raise _fail(f"The value of {what} must be a number, got {_compact(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(f"The value of {what} must be a finite number")
    result = java_round(value) if isinstance(value, float) else int(value)
    if int32 and not _INT32_MIN <= result <= _INT32_MAX:
        raise _fail(f"The value of {what} must be between {_INT32_MIN} and {_INT32_MAX}")
    return result


def _array(value: Any, what: str = "the first argument") -> list[Any]:
    if not isinstance(value, list):
        raise _fail(f"The value of {what} must be an array, got {_compact(value)}")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"The value of {what} must be a string, got {_compact(value)}")
    return value


def format_value(value: Any) -> str:
    """How ``States.Format`` renders an argument (Java's ``toString`` of the parsed JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={format_value(v)}" for k, v in value.items()) + "}"
    return _compact(value)


def _format(template: str, args: list[Any]) -> str:
    out: list[str] = []
    used = 0
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and i + 1 < len(template):
            out.append(template[i + 1])
            i += 2
        elif template.startswith("{}", i):
            if used >= len(args):
                raise _fail("Number of arguments does not match the number of '{}' placeholders")
            out.append(format_value(args[used]))
            used += 1
            i += 2
        else:
            out.append(ch)
            i += 1
    if used != len(args):
        raise _fail("Number of arguments does not match the number of '{}' placeholders")
    return "".join(out)


def _canonical(value: Any) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return json.dumps(norm(value), sort_keys=True, separators=(",", ":"))


def _eval_call(call: Call, ctx: IntrinsicContext) -> Any:
    name = call.name
    if name == "States.Format":
        template_arg = call.args[0]
        rest = [_eval_arg(a, ctx) for a in call.args[1:]]
        if isinstance(template_arg, StrArg):
            template = template_arg.raw
        else:
            template = _string(_eval_arg(template_arg, ctx), "the first argument")
        return _format(template, rest)

    args = [_eval_arg(a, ctx) for a in call.args]

    if name == "States.StringToJson":
        text = _string(args[0], "the argument")
        try:
            return json.loads(text)
        except ValueError:
            raise _fail(f"The string {_compact(text)} is not valid JSON") from None
    if name == "States.JsonToString":
        return _compact(args[0])
    if name == "States.Array":
        return args
    if name == "States.ArrayPartition":
        array = _array(args[0])
        size = _integer(args[1], "the chunk size")
        if size <= 0:
            raise _fail("The chunk size must be a positive integer")
        return [array[i : i + size] for i in range(0, len(array), size)]
    if name == "States.ArrayContains":
        array = _array(args[0])
        return any(json_equal(item, args[1]) for item in array)
    if name == "States.ArrayRange":
        start = _integer(args[0], "the first argument")
        end = _integer(args[1], "the second argument")
        step = _integer(args[2], "the step")
        if step == 0:
            raise _fail("The step must be a non-zero integer")
        count = max(0, (end - start) // step + 1)
        if count > _MAX_RANGE_ITEMS:
            raise _fail(f"The array cannot contain more than {_MAX_RANGE_ITEMS} items")
        return [start + i * step for i in range(count)]
    if name == "States.ArrayGetItem":
        array = _array(args[0])
        index = _integer(args[1], "the index")
        if not 0 <= index < len(array):
            raise _fail(f"The index {index} is out of bounds for an array of {len(array)} items")
        return array[index]
    if name == "States.ArrayLength":
        return len(_array(args[0]))
    if name == "States.ArrayUnique":
        seen: set[str] = set()
        unique: list[Any] = []
        for item in _array(args[0]):
            key = _canonical(item)
            if key not in seen:
                seen.add(key)
                unique.append(item)
        return unique
    if name == "States.Base64Encode":
        text = _string(args[0], "the argument")
        if len(text) > _MAX_BASE64_CHARS:
            raise _fail(f"The input must be at most {_MAX_BASE64_CHARS} characters")
        return base64.b64encode(text.encode("utf-8")).decode("ascii")
    if name == "States.Base64Decode":
        text = _string(args[0], "the argument")
        if len(text) > _MAX_BASE64_CHARS:
            raise _fail(f"The input must be at most {_MAX_BASE64_CHARS} characters")
        try:
            return base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise _fail(f"The string {_compact(text)} is not valid base64") from None
    if name == "States.Hash":
        data = _string(args[0], "the data")
        algorithm = _string(args[1], "the algorithm")
        if algorithm not in HASH_ALGORITHMS:
            raise _fail(f"The algorithm {algorithm!r} is not one of {', '.join(HASH_ALGORITHMS)}")
        return hashlib.new(HASH_ALGORITHMS[algorithm], data.encode("utf-8")).hexdigest()
    if name == "States.JsonMerge":
        left, right, deep = args
        if not isinstance(left, dict) or not isinstance(right, dict):
            raise _fail("The first two arguments must be JSON objects")
        if deep is not False:
            raise _fail("Only shallow merging is supported: the third argument must be false")
        return {**left, **right}
    if name == "States.MathRandom":
        start = _integer(args[0], "the start", int32=True)
        end = _integer(args[1], "the end", int32=True)
        if start >= end:
            raise _fail("The start must be smaller than the end")
        if len(args) == 3:
            seed = _integer(args[2], "the seed", int32=True)
            return _random.Random(seed).randrange(start, end)
        return start + min(end - start - 1, math.floor(ctx.random() * (end - start)))
    if name == "States.MathAdd":
        return _integer(args[0], "the first argument", int32=True) + _integer(
            args[1], "the second argument", int32=True
        )
    if name == "States.StringSplit":
        text = _string(args[0], "the first argument")
        delimiters = _string(args[1], "the delimiter")
        if not delimiters:
            raise _fail("The delimiter must not be empty")
        parts = [text]
        for d in delimiters:
            parts = [piece for part in parts for piece in part.split(d)]
        return [p for p in parts if p]
    assert name == "States.UUID"
    return ctx.uuid()
