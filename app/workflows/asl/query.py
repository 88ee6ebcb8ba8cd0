"""JSONata templates: JSON values whose strings may be ``{% expression %}``.

``Arguments``, ``Output``, ``Assign`` values, ``ItemSelector``, ``Items`` and the scalar fields
of JSONata states (``Seconds``, ``TimeoutSeconds``, ``Error``, ...) are compiled once with
:func:`compile_query` and evaluated with :func:`evaluate`. Failures are
``States.QueryEvaluationError`` with Step Functions' cause, e.g. ``The JSONata expression
'$x' specified for the field 'Output/result' returned nothing (undefined).``; ``location``
(``Output/result``) goes into the ``EvaluationFailed`` history event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from app.workflows.asl import errors
from app.workflows.asl.jsonata import (
    UNDEFINED,
    Expression,
    JsonataError,
    UnsupportedResult,
    compile_expression,
)
from app.workflows.asl.model import Env


class QueryError(errors.StatesError):
    """``States.QueryEvaluationError`` at ``location`` (a field, e.g. ``Output/result``)."""

    def __init__(self, cause: str, location: str):
        super().__init__(errors.QUERY_EVALUATION_ERROR, cause)
        self.location = location


@dataclass(frozen=True, slots=True)
class QConst:
    value: Any


@dataclass(frozen=True, slots=True)
class QExpr:
    field: str
    expr: Expression


@dataclass(frozen=True, slots=True)
class QObject:
    items: tuple[tuple[str, QNode], ...]


@dataclass(frozen=True, slots=True)
class QArray:
    items: tuple[QNode, ...]


QNode: TypeAlias = QConst | QExpr | QObject | QArray


def expression_text(value: Any) -> str | None:
    """The expression inside ``{% ... %}``, or ``None`` if ``value`` is not one."""
    if isinstance(value, str) and len(value) >= 4 and value[:2] == "{%" and value[-2:] == "%}":
        return value[2:-2].strip()
    return None


def compile_query(value: Any, field: str) -> QNode:
    """Compile a template; raises ``JsonataSyntaxError`` (with ``.field`` set)."""
    text = expression_text(value)
    if text is not None:
        return QExpr(field, compile_expression(text))
    if isinstance(value, dict):
        items = tuple((k, compile_query(v, f"{field}/{k}")) for k, v in value.items())
        if all(isinstance(n, QConst) for _, n in items):
            return QConst(value)
        return QObject(items)
    if isinstance(value, list):
        nodes = tuple(compile_query(v, f"{field}[{i}]") for i, v in enumerate(value))
        if all(isinstance(n, QConst) for n in nodes):
            return QConst(value)
        return QArray(nodes)
    return QConst(value)


def evaluate(node: QNode, bindings: Mapping[str, Any], env: Env) -> Any:
    if isinstance(node, QConst):
        return node.value
    if isinstance(node, QObject):
        return {k: evaluate(sub, bindings, env) for k, sub in node.items}
    if isinstance(node, QArray):
        return [evaluate(sub, bindings, env) for sub in node.items]
    head = f"The JSONata expression '{node.expr.text}' specified for the field '{node.field}'"
    try:
        value = node.expr.evaluate(bindings, env)
    except UnsupportedResult:
        raise QueryError(f"{head} returned an unsupported result type.", node.field) from None
    except JsonataError as exc:
        raise QueryError(
            f"{head} threw an error during evaluation. {exc.detail}", node.field
        ) from None
    if value is UNDEFINED:
        raise QueryError(f"{head} returned nothing (undefined).", node.field)
    return value


def type_name(value: Any) -> str:
    """JSONata's ``$type`` name of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def unexpected_type(node: QNode, expected: str, value: Any, compact: str) -> QueryError:
    """A result of the wrong type (``Items`` not an array, ``Seconds`` not a number, ...)."""
    if isinstance(node, QExpr):
        text, field = node.expr.text, node.field
    else:
        text, field = compact, "?"
    return QueryError(
        f"The JSONata expression '{text}' specified for the field '{field}' returned an "
        f"unexpected result type. Expected '{expected}', but was '{type_name(value)}' for "
        f"value: {compact}",
        field,
    )
