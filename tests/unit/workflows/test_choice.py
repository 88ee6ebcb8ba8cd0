"""Choice rules: every operator, the ...Path variants, And/Or/Not, Default, NoChoiceMatched."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.workflows.asl import errors
from app.workflows.asl.choice import (
    OPERATORS,
    choose,
    compile_choices,
    compile_rule,
    evaluate,
    parse_timestamp,
    string_matches,
)
from app.workflows.asl.errors import StatesError

from .conftest import run


def holds(rule: dict[str, Any], data: Any) -> bool:
    return evaluate(compile_rule(rule), data, {})


DOC_CHOICES = [
    {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
    {"Variable": "$.value", "NumericEquals": 0, "Next": "ValueIsZero"},
    {
        "And": [
            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
            {"Variable": "$.value", "NumericLessThan": 30},
        ],
        "Next": "ValueInTwenties",
    },
]


@pytest.mark.parametrize(
    ("data", "target"),
    [
        ({"type": "Public", "value": 22}, "Public"),
        ({"type": "Private", "value": 0}, "ValueIsZero"),
        ({"type": "Private", "value": 22}, "ValueInTwenties"),
        ({"type": "Private", "value": 35}, "DefaultState"),
    ],
)
def test_doc_choice_example(data: dict[str, Any], target: str) -> None:
    assert choose(compile_choices(DOC_CHOICES), "DefaultState", data) == target


def test_no_match_without_default_is_no_choice_matched() -> None:
    with pytest.raises(StatesError) as info:
        choose(compile_choices(DOC_CHOICES), None, {"type": "Private", "value": 35})
    assert info.value.error == errors.NO_CHOICE_MATCHED


@pytest.mark.parametrize(
    ("op", "value", "operand", "expected"),
    [
        ("StringEquals", "a", "a", True),
        ("StringEquals", 1, "1", False),
        ("StringLessThan", "a", "b", True),
        ("StringGreaterThan", "b", "a", True),
        ("StringLessThanEquals", "a", "a", True),
        ("StringGreaterThanEquals", "a", "b", False),
        ("StringMatches", "log-2024.txt", "log-*.txt", True),
        ("StringMatches", "a*b", r"a\*b", True),
        ("StringMatches", "axb", r"a\*b", False),
        ("StringMatches", "a\\b", "a\\\\b", True),
        ("NumericEquals", 1, 1.0, True),
        ("NumericEquals", True, 1, False),
        ("NumericEquals", "1", 1, False),
        ("NumericLessThan", 1, 2, True),
        ("NumericGreaterThan", 3, 2, True),
        ("NumericLessThanEquals", 2, 2, True),
        ("NumericGreaterThanEquals", 1, 2, False),
        ("BooleanEquals", True, True, True),
        ("BooleanEquals", 1, True, False),
        ("TimestampEquals", "2016-03-14T01:59:00Z", "2016-03-14T02:59:00+01:00", True),
        ("TimestampLessThan", "2016-03-14T01:59:00Z", "2016-03-14T01:59:00.001Z", True),
        ("TimestampGreaterThan", "2017-01-01T00:00:00Z", "2016-03-14T01:59:00Z", True),
        ("TimestampLessThanEquals", "2016-03-14T01:59:00Z", "2016-03-14T01:59:00Z", True),
        ("TimestampGreaterThanEquals", "not a date", "2016-03-14T01:59:00Z", False),
        ("IsNull", None, True, True),
        ("IsNull", 0, True, False),
        ("IsNumeric", 1.5, True, True),
        ("IsNumeric", True, True, False),
        ("IsString", "x", True, True),
        ("IsBoolean", False, True, True),
        ("IsTimestamp", "2016-03-14T01:59:00Z", True, True),
        ("IsTimestamp", "2016-03-14 01:59:00", True, False),
        ("IsTimestamp", "2016-03-14t01:59:00z", True, False),
        ("IsString", 5, False, True),
    ],
)
def test_operators(op: str, value: Any, operand: Any, expected: bool) -> None:
    assert holds({"Variable": "$.v", op: operand}, {"v": value}) is expected


def test_every_comparison_has_a_path_variant() -> None:
    for op, kind in OPERATORS.items():
        if kind in ("string", "number", "boolean", "timestamp") and op != "StringMatches":
            assert OPERATORS[f"{op}Path"] == "path"


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        ("StringEqualsPath", "x", "x", True),
        ("NumericGreaterThanEqualsPath", 5, 3, True),
        ("NumericGreaterThanEqualsPath", 2, 3, False),
        ("BooleanEqualsPath", False, False, True),
        ("TimestampLessThanPath", "2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z", True),
        ("StringLessThanPath", "a", 1, False),
    ],
)
def test_path_operators(op: str, a: Any, b: Any, expected: bool) -> None:
    assert holds({"Variable": "$.a", op: "$.b"}, {"a": a, "b": b}) is expected


def test_is_present() -> None:
    assert holds({"Variable": "$.a", "IsPresent": True}, {"a": None})
    assert holds({"Variable": "$.a", "IsPresent": False}, {})
    assert holds({"Not": {"Variable": "$.a", "IsPresent": True}}, {})


def test_missing_variable_is_runtime_error_with_aws_cause() -> None:
    with pytest.raises(StatesError) as info:
        holds({"Variable": "$.jobs[0].done", "BooleanEquals": True}, {"jobs": [{}]})
    assert info.value.error == errors.RUNTIME
    assert info.value.cause == (
        "Invalid path '$.jobs[0].done': The choice state's condition path references an invalid "
        "value."
    )
    with pytest.raises(StatesError):
        holds({"Variable": "$.a", "NumericEqualsPath": "$.missing"}, {"a": 1})


def test_or_and_context_variable() -> None:
    rule = {
        "Or": [
            {"Variable": "$.a", "NumericEquals": 1},
            {"Variable": "$$.Execution.Name", "StringEquals": "special"},
        ]
    }
    compiled = compile_rule(rule)
    assert evaluate(compiled, {"a": 2}, {"Execution": {"Name": "special"}})
    assert not evaluate(compiled, {"a": 2}, {"Execution": {"Name": "other"}})


def test_strings_compare_by_utf16_code_units_like_java() -> None:
    # U+FFFD is above the surrogate range; U+1F600 is encoded with surrogates (0xD83D...).
    assert holds({"Variable": "$.v", "StringGreaterThan": "\U0001f600"}, {"v": "\ufffd"})


def test_parse_timestamp() -> None:
    stamp = parse_timestamp("2016-03-14T01:59:00.123456789+05:30")
    assert stamp is not None
    assert stamp.microsecond == 123456
    assert parse_timestamp("2016-02-30T00:00:00Z") is None


def test_choice_state_end_to_end_uses_input_path_and_output_path() -> None:
    definition = {
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Choice",
                "InputPath": "$.scoped",
                "OutputPath": "$.value",
                "Choices": [{"Variable": "$.route", "StringEquals": "yes", "Next": "Done"}],
                "Default": "Wrong",
            },
            "Done": {"Type": "Pass", "End": True},
            "Wrong": {"Type": "Fail", "Error": "WrongBranch"},
        },
    }
    done = run(definition, {"scoped": {"route": "yes", "value": 1}, "route": "no"})
    assert done.status == "SUCCEEDED"
    assert done.output == 1


def test_choice_no_match_fails_execution() -> None:
    definition = {
        "StartAt": "C",
        "States": {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "StringEquals": "never", "Next": "Done"}],
            },
            "Done": {"Type": "Pass", "End": True},
        },
    }
    done = run(definition, {"x": "a"})
    assert done.status == "FAILED"
    assert done.error == errors.NO_CHOICE_MATCHED
    assert done.cause == (
        "An error occurred while executing the state 'C' (entered at the event id #2). "
        "Failed to transition out of the state. The state does not point to a next state."
    )


# -- properties -----------------------------------------------------------------------------------

plain_text = st.text(alphabet="ab*\\x", max_size=8)


@given(plain_text)
def test_star_matches_everything_and_literal_pattern_matches_itself(text: str) -> None:
    assert string_matches(text, "*")
    escaped = text.replace("\\", "\\\\").replace("*", "\\*")
    assert string_matches(text, escaped)


@given(
    st.one_of(st.integers(), st.floats(allow_nan=False)),
    st.one_of(st.integers(), st.floats(allow_nan=False)),
)
def test_numeric_operators_are_consistent(a: float, b: float) -> None:
    data = {"a": a, "b": b}
    lt = holds({"Variable": "$.a", "NumericLessThanPath": "$.b"}, data)
    eq = holds({"Variable": "$.a", "NumericEqualsPath": "$.b"}, data)
    gt = holds({"Variable": "$.a", "NumericGreaterThanPath": "$.b"}, data)
    assert [lt, eq, gt].count(True) == 1
    assert holds({"Variable": "$.a", "NumericLessThanEqualsPath": "$.b"}, data) == (lt or eq)
