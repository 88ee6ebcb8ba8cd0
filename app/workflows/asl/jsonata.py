"""The JSONata engine behind one small adapter (switching engines is this module only).

``compile_expression(text)`` parses once, when the machine is compiled; ``Expression.evaluate``
runs it with variable bindings (``$states``, the workflow variables) and the execution's
:class:`~app.workflows.asl.model.Env` (Step Functions' ``$random``, ``$uuid`` and JSONata's
``$now``/``$millis`` read it: the interpreter has no randomness or clock of its own). The
result is plain JSON (``None`` for JSONata ``null``) or :data:`UNDEFINED`; engine errors
become :class:`JsonataError` with the ``<code>: <message>`` text Step Functions quotes.

Engine: ``jsonata-python`` (a port of jsonata-java). Step Functions' extra functions
(``$partition``, ``$range``, ``$hash``, ``$random``, ``$uuid``, ``$parse``) are registered here.
"""

from __future__ import annotations

import hashlib
import json
import random as _random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jsonata import jexception, utils
from jsonata import jsonata as _engine

from app.workflows.asl.model import Env, iso


class _Undefined:
    def __repr__(self) -> str:
        return "UNDEFINED"


#: What an expression that selects nothing returns (distinct from JSONata ``null``).
UNDEFINED: Final = _Undefined()


class JsonataError(Exception):
    """An evaluation error: ``detail`` is ``<code>: <message>`` as Step Functions quotes it."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class JsonataSyntaxError(ValueError):
    """The expression does not parse."""


class UnsupportedResult(JsonataError):
    """The expression returned something that is not JSON (a function)."""


HASH_ALGORITHMS: Final = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _fail(code: str, message: str) -> jexception.JException:
    err = jexception.JException(code, 0)
    err.args = (message,)
    return err


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
        return _to_engine(json.loads(text))
    except ValueError as exc:
        raise _fail("D3030", f"The argument of $parse is not valid JSON: {exc}") from None


def _to_engine(value: Any) -> Any:
    """Parsed JSON into the engine's representation (JSON ``null`` inside data is fine as
    ``None``; at the top level the engine would read ``None`` as *undefined*)."""
    return utils.Utils.NULL_VALUE if value is None else value


_STATIC: Final[dict[str, Callable[..., Any]]] = {
    "partition": _partition,
    "range": _range,
    "hash": _hash,
    "parse": _parse,
}
_DYNAMIC: Final = ("random", "uuid", "now", "millis")


def _env_functions(env: Env) -> dict[str, Any]:
    def random(seed: Any = None) -> float:
        if seed is None:
            return env.random()
        return _random.Random(seed).random()

    def now(picture: Any = None, timezone: Any = None) -> Any:
        if picture is None and timezone is None:
            return iso(env.now)
        millis = int(env.now.timestamp() * 1000)
        return _engine.functions.Functions.from_millis(millis, picture, timezone)

    def millis() -> int:
        return int(env.now.timestamp() * 1000)

    return {
        "random": _engine.Jsonata.JLambda(random),
        "uuid": _engine.Jsonata.JLambda(lambda: env.uuid()),
        "now": _engine.Jsonata.JLambda(now),
        "millis": _engine.Jsonata.JLambda(millis),
    }


def _plain(value: Any) -> Any:
    """The engine's result as plain JSON: ``null`` markers to ``None``, its list subclass to
    ``list``; functions are :class:`UnsupportedResult`."""
    if value is utils.Utils.NULL_VALUE:
        return None
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    raise UnsupportedResult("unsupported result type")


#: A reference the engine need not run: ``$name`` or ``$name.field.field`` (variable, then
#: plain field names), e.g. ``$states.input.order``. Most expressions in real definitions are
#: one; walking the dicts directly costs a microsecond, the engine about forty.
_Reference = tuple[str, tuple[str, ...]]
_FALL_BACK: Final = object()


def _reference(ast: Any) -> _Reference | None:
    """The variable and field names of a plain reference, or None for anything else."""

    def plain(node: Any, kind: str) -> bool:
        return (
            getattr(node, "type", None) == kind
            and isinstance(getattr(node, "value", None), str)
            and not any(
                getattr(node, extra, None)
                for extra in ("stages", "predicate", "group", "focus", "index", "tuple")
            )
            and not getattr(node, "keep_array", False)
        )

    if plain(ast, "variable") and ast.value:
        return ast.value, ()
    steps = getattr(ast, "steps", None) if getattr(ast, "type", None) == "path" else None
    if not steps or getattr(ast, "keep_singleton_array", False):
        return None
    head, *rest = steps
    if not (plain(head, "variable") and head.value and all(plain(s, "name") for s in rest)):
        return None
    return head.value, tuple(s.value for s in rest)


def _follow(reference: _Reference, bindings: Mapping[str, Any]) -> Any:
    """The reference's value through plain dicts; :data:`_FALL_BACK` when the engine's own
    rules matter (an unbound name, an array on the way or at the end, a non-dict)."""
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
    if value is utils.Utils.NULL_VALUE:
        return None
    if isinstance(value, list) or not isinstance(value, (dict, str, bool, int, float, type(None))):
        return _FALL_BACK
    return _plain(value)


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
            result = self._compiled.evaluate(None, values)
        except jexception.JException as exc:
            raise JsonataError(f"{exc.error}: {exc.args[0] if exc.args else exc}") from None
        except RecursionError:
            raise JsonataError("U1001: Stack overflow error") from None
        except Exception as exc:  # the engine's own bugs surface as evaluation errors
            raise JsonataError(f"{type(exc).__name__}: {exc}") from None
        if result is None:
            return UNDEFINED
        return _plain(result)


def compile_expression(text: str) -> Expression:
    """Parse ``text`` once; raises :class:`JsonataSyntaxError`."""
    try:
        compiled = _engine.Jsonata(text)
    except jexception.JException as exc:
        raise JsonataSyntaxError(f"{exc.error}: {exc}") from None
    except Exception as exc:
        raise JsonataSyntaxError(str(exc)) from None
    if compiled.errors:
        raise JsonataSyntaxError(str(compiled.errors[0]))
    compiled.set_output_convert_nulls(False)
    compiled.set_validate_input(False)
    for name, fn in _STATIC.items():
        if f"${name}" in text:
            compiled.register_lambda(name, fn)
    needs_env = any(f"${name}" in text for name in _DYNAMIC)
    return Expression(text, compiled, needs_env, _reference(compiled.ast))


def bind_value(value: Any) -> Any:
    """A JSON value as a binding (top-level ``null`` must stay JSONata ``null``)."""
    return _to_engine(value)


__all__ = [
    "HASH_ALGORITHMS",
    "UNDEFINED",
    "Expression",
    "JsonataError",
    "JsonataSyntaxError",
    "UnsupportedResult",
    "bind_value",
    "compile_expression",
]
