"""The JSONata engine behind one small adapter (switching engines is this module only).

``compile_expression(text)`` parses once, when the machine is compiled; ``Expression.evaluate``
runs it with variable bindings (``$states``, the workflow variables) and the execution's
:class:`~app.workflows.asl.model.Env` (Step Functions' ``$random``, ``$uuid`` and JSONata's
``$now``/``$millis`` read it: the interpreter has no randomness or clock of its own). The
result is plain JSON or :data:`UNDEFINED`; engine errors become :class:`JsonataError` with the
``<code>: <message>`` text Step Functions quotes.

Engine: ``jlens`` (Rust), chosen on the jsonata-js reference suite: it passed all 1,686 cases,
where jsonata-python passed 1,669 and answered 55 error cases with the wrong code, and it
evaluates in 4-18 µs instead of 65-200 µs (issue 16's note has the table). Step Functions'
extra functions (``$partition``, ``$range``, ``$hash``, ``$random``, ``$uuid``, ``$parse``)
are registered here. An evaluation may run for :data:`TIME_LIMIT_SECONDS` at most, so a
runaway expression fails its state instead of holding a worker.
"""

from __future__ import annotations

import hashlib
import json
import random as _random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import jlens

from app.workflows.asl.model import Env, iso


class _Undefined:
    def __repr__(self) -> str:
        return "UNDEFINED"


#: What an expression that selects nothing returns (distinct from JSONata ``null``).
UNDEFINED: Final = _Undefined()
#: The longest one evaluation may run (JSONata's own guard answers ``D1012``).
TIME_LIMIT_SECONDS: Final = 5.0


class JsonataError(Exception):
    """An evaluation error: ``detail`` is ``<code>: <message>`` as Step Functions quotes it."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class JsonataSyntaxError(ValueError):
    """The expression does not parse."""


class UnsupportedResult(JsonataError):
    """The expression returned something that is not JSON."""


class _Refused(Exception):
    """An extra function refusing its arguments; the engine passes it through unchanged."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


HASH_ALGORITHMS: Final = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _fail(code: str, message: str) -> _Refused:
    return _Refused(code, message)


def _partition(array: Any, size: Any) -> Any:
    if not isinstance(array, list):
        raise _fail("D3030", "The first argument of $partition must be an array")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or size < 1:
        raise _fail("D3030", "The second argument of $partition must be a positive number")
    n = int(size)
    return [list(array[i : i + n]) for i in range(0, len(array), n)]


def _range(start: Any, end: Any, step: Any) -> Any:
    for value in (start, end, step):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail("D3030", "The arguments of $range must be numbers")
    if step == 0:
        raise _fail("D3030", "The step of $range must not be zero")
    out: list[Any] = []
    value = start
    while (step > 0 and value <= end) or (step < 0 and value >= end):
        out.append(value)
        value += step
        if len(out) > 1000:
            raise _fail("D3030", "The result of $range cannot contain more than 1000 items")
    return out


def _hash(data: Any, algorithm: Any) -> Any:
    if not isinstance(data, str):
        raise _fail("D3030", "The first argument of $hash must be a string")
    if algorithm not in HASH_ALGORITHMS:
        raise _fail(
            "D3030",
            f"The algorithm of $hash must be one of {', '.join(HASH_ALGORITHMS)}",
        )
    return hashlib.new(HASH_ALGORITHMS[algorithm], data.encode("utf-8")).hexdigest()


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise _fail("D3030", "The argument of $parse must be a string")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _fail("D3030", f"The argument of $parse is not valid JSON: {exc}") from None


_STATIC: Final[dict[str, Callable[..., Any]]] = {
    "partition": _partition,
    "range": _range,
    "hash": _hash,
    "parse": _parse,
}
_DYNAMIC: Final = ("random", "uuid", "now", "millis")


def _env_functions(env: Env) -> dict[str, Any]:
    """``$random``, ``$uuid``, ``$now`` and ``$millis`` from the execution's Env (bindings
    take precedence over the engine's own functions of the same name)."""

    def random(seed: Any = None) -> float:
        if seed is None:
            return env.random()
        return _random.Random(seed).random()

    def millis() -> int:
        return int(env.now.timestamp() * 1000)

    def now(picture: Any = None, timezone: Any = None) -> Any:
        if picture is None and timezone is None:
            return iso(env.now)
        text = _FROM_MILLIS.evaluate_json(None, {"m": millis(), "p": picture, "z": timezone})
        return None if text is None else json.loads(text)

    return {"random": random, "uuid": env.uuid, "now": now, "millis": millis}


_FROM_MILLIS: Final = jlens.Expression("$fromMillis($m, $p, $z)")

#: A reference the engine need not run: ``$name`` or ``$name.field.field`` (a variable, then
#: plain field names), e.g. ``$states.input.order``. Most expressions in real definitions are
#: one; following the dicts directly skips converting every binding into the engine's values.
_REFERENCE: Final = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_Reference = tuple[str, tuple[str, ...]]
_FALL_BACK: Final = object()


def _reference(text: str) -> _Reference | None:
    """The variable and field names of a plain reference, or None for anything else."""
    found = _REFERENCE.fullmatch(text.strip())
    if found is None:
        return None
    return found.group(1), tuple(found.group(2).split(".")[1:])


def _follow(reference: _Reference, bindings: Mapping[str, Any]) -> Any:
    """The reference's value through plain dicts; :data:`_FALL_BACK` when the engine's own
    rules matter (an unbound name, an array on the way or at the end, anything not a dict)."""
    name, fields = reference
    if name not in bindings:
        return _FALL_BACK
    value = bindings[name]
    for field in fields:
        if type(value) is not dict:
            return _FALL_BACK
        if field not in value:
            return UNDEFINED
        value = value[field]
    if value is None or isinstance(value, (str, bool, int, float, dict)):
        return _as_engine_answers(value)
    return _FALL_BACK


def _as_engine_answers(value: Any) -> Any:
    """A copy of ``value`` as the engine's JSON answer has it: JSONata writes numbers as
    JavaScript does, so a whole float below 1e21 comes back an integer (``2.0`` → ``2``)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return int(value) if abs(value) < 2**53 else int(Decimal(repr(value)))
        return value
    if isinstance(value, dict):
        return {k: _as_engine_answers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_engine_answers(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Expression:
    """One compiled expression (the text between ``{%`` and ``%}``, stripped)."""

    text: str
    _compiled: Any
    _needs_env: bool
    _reference: _Reference | None = None

    def evaluate(self, bindings: Mapping[str, Any], env: Env) -> Any:
        """The value, or :data:`UNDEFINED`; raises :class:`JsonataError`."""
        if self._reference is not None:
            found = _follow(self._reference, bindings)
            if found is not _FALL_BACK:
                return found
        values = dict(bindings)
        if self._needs_env:
            values.update(_env_functions(env))
        try:
            text = self._compiled.evaluate_json(None, values, timeout=TIME_LIMIT_SECONDS)
        except jlens.JlensError as exc:
            raise JsonataError(f"{exc.code or 'D3030'}: {exc}") from None
        except _Refused as exc:
            raise JsonataError(f"{exc.code}: {exc}") from None
        except RecursionError:
            raise JsonataError("U1001: Stack overflow error") from None
        except Exception as exc:  # the engine's own bugs surface as evaluation errors
            raise JsonataError(f"{type(exc).__name__}: {exc}") from None
        if text is None:
            return UNDEFINED
        try:
            return json.loads(text)
        except ValueError:  # NaN or Infinity: not JSON
            raise UnsupportedResult("unsupported result type") from None


def compile_expression(text: str) -> Expression:
    """Parse ``text`` once; raises :class:`JsonataSyntaxError`."""
    try:
        compiled = jlens.Expression(text)
    except jlens.JlensError as exc:
        raise JsonataSyntaxError(f"{exc.code}: {exc}") from None
    except Exception as exc:
        raise JsonataSyntaxError(str(exc)) from None
    for name, fn in _STATIC.items():
        if f"${name}" in text:
            compiled.register_function(name, fn)
    needs_env = any(f"${name}" in text for name in _DYNAMIC)
    return Expression(text, compiled, needs_env, _reference(text))


def bind_value(value: Any) -> Any:
    """A JSON value as a binding (the engine reads ``None`` as JSON ``null``)."""
    return value


__all__ = [
    "HASH_ALGORITHMS",
    "TIME_LIMIT_SECONDS",
    "UNDEFINED",
    "Expression",
    "JsonataError",
    "JsonataSyntaxError",
    "UnsupportedResult",
    "bind_value",
    "compile_expression",
]
