"""The JSONata adapter: a plain reference (``$states.input.a.b``) is followed without the
engine, and must agree with the engine on every JSON value, arrays and nulls included."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.workflows.asl import jsonata
from app.workflows.asl.jsonata import (
    UNDEFINED,
    JsonataError,
    bind_value,
    compile_expression,
)

NAMES = st.sampled_from(["a", "b", "c"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=12,
)


def _engine_only(text: str) -> Any:
    expression = compile_expression(text)
    return type(expression)(expression.text, expression._compiled, expression._needs_env, None)


def _outcome(expression: Any, bindings: dict[str, Any]) -> Any:
    try:
        return expression.evaluate(bindings, None)
    except JsonataError as exc:
        return ("error", exc.detail.split(":")[0])


@settings(max_examples=400, deadline=None)
@given(
    value=JSON,
    fields=st.lists(NAMES, max_size=3),
    variable=st.sampled_from(["x", "states", "unbound"]),
)
def test_a_plain_reference_agrees_with_the_engine(
    value: Any, fields: list[str], variable: str
) -> None:
    text = "$" + ".".join([variable, *fields])
    bindings = {"x": bind_value(value), "states": {"input": value, "context": {"a": 1}}}
    fast = compile_expression(text)
    assert fast._reference == (variable, tuple(fields))
    expected = _outcome(_engine_only(text), bindings)
    assert _outcome(fast, bindings) == expected
    assert repr(_outcome(fast, bindings)) == repr(expected)  # 2.0 is 2, as in JavaScript


def test_references_with_anything_more_go_to_the_engine() -> None:
    for text in ("$x.a[0]", "$x.a[]", "$x.(a)", "$x.a^(b)", "$x#$i", "$x.$y", "$", "a.b"):
        assert compile_expression(text)._reference is None, text


def test_a_missing_field_is_undefined_and_a_null_is_null() -> None:
    bindings = {"states": {"input": {"a": None}}}
    assert compile_expression("$states.input.a").evaluate(bindings, None) is None
    assert compile_expression("$states.input.b").evaluate(bindings, None) is UNDEFINED
    assert compile_expression("$states.input.a.b").evaluate(bindings, None) is UNDEFINED


def test_a_runaway_expression_is_stopped_and_fails_as_an_evaluation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jsonata, "TIME_LIMIT_SECONDS", 0.2)
    forever = compile_expression("($f := function($n){ $f($n + 1) }; $f(0))")
    began = time.monotonic()
    with pytest.raises(JsonataError, match=r"^D1012: "):
        forever.evaluate({}, None)
    assert time.monotonic() - began < 5


def test_step_functions_extra_functions_refuse_bad_arguments_with_a_code() -> None:
    with pytest.raises(JsonataError, match=r"^D3030: .*\$partition"):
        compile_expression("$partition([1, 2], 0)").evaluate({}, None)
    assert compile_expression("$partition([1, 2, 3], 2)").evaluate({}, None) == [[1, 2], [3]]
    assert compile_expression("$hash('a', 'SHA-256')").evaluate({}, None) == (
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    )
