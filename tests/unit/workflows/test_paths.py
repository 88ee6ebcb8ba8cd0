"""InputPath, Parameters, ResultSelector, ResultPath, OutputPath and payload templates, with the
developer guide's "Processing input and output" examples."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.common.jsonpath import parse
from app.workflows.asl import errors
from app.workflows.asl.errors import StatesError
from app.workflows.asl.paths import (
    MAX_PAYLOAD_BYTES,
    Scope,
    TConst,
    TemplateError,
    apply_result_path,
    check_payload_size,
    compile_template,
    render,
    select,
)

from .conftest import run


def scope(data: Any, context: Any = None) -> Scope:
    rng = random.Random(1)
    return Scope(data, context or {}, rng.random, lambda: "00000000-0000-4000-8000-000000000000")


# -- developer guide examples ---------------------------------------------------------------------

INPUT_PATH_EXAMPLE = {
    "comment": "Example for InputPath.",
    "dataset1": {"val1": 1, "val2": 2, "val3": 3},
    "dataset2": {"val1": "a", "val2": "b", "val3": "c"},
}


def test_doc_input_path_example() -> None:
    assert select(parse("$.dataset2"), INPUT_PATH_EXAMPLE, {}) == {
        "val1": "a",
        "val2": "b",
        "val3": "c",
    }


def test_doc_parameters_example() -> None:
    state_input = {
        "comment": "Example for Parameters.",
        "product": {
            "details": {"color": "blue", "size": "small", "material": "cotton"},
            "availability": "in stock",
            "sku": "2317",
            "cost": "$23",
        },
    }
    template = compile_template(
        {
            "comment": "Selecting what I care about.",
            "MyDetails": {
                "size.$": "$.product.details.size",
                "exists.$": "$.product.availability",
                "StaticValue": "foo",
            },
        }
    )
    assert render(template, scope(state_input)) == {
        "comment": "Selecting what I care about.",
        "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"},
    }


def test_doc_result_selector_example() -> None:
    result = {
        "resourceType": "elasticmapreduce",
        "resource": "createCluster.sync",
        "output": {
            "SdkHttpMetadata": {"HttpStatusCode": 200},
            "SdkResponseMetadata": {"RequestId": "1234-5678-9011"},
            "ClusterId": "AKIAIOSFODNN7EXAMPLE",
        },
    }
    selector = compile_template(
        {"ClusterId.$": "$.output.ClusterId", "ResourceType.$": "$.resourceType"}
    )
    assert render(selector, scope(result)) == {
        "ClusterId": "AKIAIOSFODNN7EXAMPLE",
        "ResourceType": "elasticmapreduce",
    }


RESULT_PATH_INPUT = {
    "comment": "This is a test of the input and output of a Task state.",
    "details": "Default example",
    "who": "AWS Step Functions",
}
HELLO = "Hello, AWS Step Functions!"


def test_doc_result_path_examples() -> None:
    assert apply_result_path(parse("$"), RESULT_PATH_INPUT, HELLO) == HELLO
    assert apply_result_path(None, RESULT_PATH_INPUT, HELLO) == RESULT_PATH_INPUT
    assert apply_result_path(parse("$.taskresult"), RESULT_PATH_INPUT, HELLO) == {
        **RESULT_PATH_INPUT,
        "taskresult": HELLO,
    }


def test_doc_input_result_output_path_example_end_to_end() -> None:
    """InputPath "$.lambda", ResultPath "$.data.lambdaresult", OutputPath "$.data"."""
    definition = {
        "StartAt": "HelloWorld",
        "States": {
            "HelloWorld": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:HelloFunction",
                "InputPath": "$.lambda",
                "ResultPath": "$.data.lambdaresult",
                "OutputPath": "$.data",
                "End": True,
            }
        },
    }
    state_input = {
        "comment": "An input comment.",
        "data": {"val1": 23, "val2": 17},
        "extra": "foo",
        "lambda": {"who": "AWS Step Functions"},
    }
    seen: list[Any] = []

    def hello(command: Any) -> str:
        seen.append(command.parameters)
        return f"Hello, {command.parameters['who']}!"

    done = run(definition, state_input, hello)
    assert seen == [{"who": "AWS Step Functions"}]
    assert done.output == {"val1": 23, "val2": 17, "lambdaresult": HELLO}


def test_doc_result_selector_with_result_path_end_to_end() -> None:
    definition = {
        "StartAt": "Cluster",
        "States": {
            "Cluster": {
                "Type": "Task",
                "Resource": "arn:aws:states:::elasticmapreduce:createCluster.sync",
                "ResultSelector": {
                    "ClusterId.$": "$.output.ClusterId",
                    "ResourceType.$": "$.resourceType",
                },
                "ResultPath": "$.EMROutput",
                "End": True,
            }
        },
    }
    result = {"resourceType": "elasticmapreduce", "output": {"ClusterId": "AKIAIOSFODNN7EXAMPLE"}}
    done = run(definition, {"foo": "bar"}, {"Cluster": result})
    assert done.output == {
        "foo": "bar",
        "EMROutput": {"ClusterId": "AKIAIOSFODNN7EXAMPLE", "ResourceType": "elasticmapreduce"},
    }


# -- select (InputPath / OutputPath) --------------------------------------------------------------


def test_null_path_gives_empty_object() -> None:
    assert select(None, {"a": 1}, {}) == {}


def test_missing_input_path_is_states_runtime_with_aws_cause() -> None:
    with pytest.raises(StatesError) as info:
        select(parse("$.a.b"), {"a": {}}, {})
    assert info.value.error == errors.RUNTIME
    assert info.value.cause == "Invalid path '$.a.b' : No results for path: $['a']['b']"


def test_select_reads_context_object() -> None:
    assert select(parse("$$.Execution.Input.ids"), {}, {"Execution": {"Input": {"ids": [1]}}}) == [
        1
    ]


# -- ResultPath -----------------------------------------------------------------------------------


def test_result_path_creates_missing_objects_and_does_not_mutate() -> None:
    original = {"a": {"keep": 1}}
    out = apply_result_path(parse("$.a.b.c"), original, 5)
    assert out == {"a": {"keep": 1, "b": {"c": 5}}}
    assert original == {"a": {"keep": 1}}


def test_result_path_into_array_element() -> None:
    out = apply_result_path(parse("$[1].payload"), [{"a": 1}, {"id": 7}], {"s": 1})
    assert out == [{"a": 1}, {"id": 7, "payload": {"s": 1}}]


@pytest.mark.parametrize(
    ("path", "state_input"),
    [("$.x", "just-a-string"), ("$.a.b", {"a": 1}), ("$[10].p", [1]), ("$.a[0]", {"a": {}})],
)
def test_result_path_match_failure(path: str, state_input: Any) -> None:
    with pytest.raises(StatesError) as info:
        apply_result_path(parse(path), state_input, 1)
    assert info.value.error == errors.RESULT_PATH_MATCH_FAILURE
    assert info.value.cause is not None
    assert info.value.cause.startswith("Unable to apply step")


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.text(alphabet="abcxyz_", min_size=1, max_size=4)


@given(
    st.dictionaries(keys, json_value, max_size=4),
    st.lists(keys, min_size=1, max_size=4),
    json_value,
)
def test_result_path_round_trips(doc: dict[str, Any], steps: list[str], result: Any) -> None:
    """Whatever ResultPath writes, the same path reads back; nothing else changes."""
    path = parse("$" + "".join(f"['{k}']" for k in steps))
    try:
        out = apply_result_path(path, doc, result)
    except StatesError as exc:
        error = exc.error
        assert error == errors.RESULT_PATH_MATCH_FAILURE
        return
    assert path.get(out) == result
    for key in doc:
        if key != steps[0]:
            assert out[key] == doc[key]


# -- payload templates ----------------------------------------------------------------------------


def test_static_templates_compile_to_constants() -> None:
    assert isinstance(compile_template({"a": [1, {"b": 2}]}), TConst)


def test_template_recurses_into_arrays_and_reads_context() -> None:
    template = compile_template(
        {"list": [{"id.$": "$.id"}, "static"], "name.$": "$$.Execution.Name"}
    )
    assert render(template, scope({"id": 3}, {"Execution": {"Name": "run-1"}})) == {
        "list": [{"id": 3}, "static"],
        "name": "run-1",
    }


def test_template_missing_path_is_runtime_error_with_aws_wording() -> None:
    template = compile_template({"y.$": "$.x"})
    with pytest.raises(StatesError) as info:
        render(template, scope({"a": 1}))
    assert info.value.error == errors.RUNTIME
    assert info.value.cause == (
        "The JSONPath '$.x' specified for the field 'y.$' could not be found in the input "
        "'{\"a\":1}'"
    )


def test_template_indefinite_path_gives_list_and_index_past_end_gives_null() -> None:
    template = compile_template({"all.$": "$.items[*].v", "past.$": "$.items[9]"})
    assert render(template, scope({"items": [{"v": 1}, {"v": 2}]})) == {
        "all": [1, 2],
        "past": None,
    }


def test_template_intrinsic() -> None:
    template = compile_template({"greeting.$": "States.Format('Hello, {}!', $.name)"})
    assert render(template, scope({"name": "Pat"})) == {"greeting": "Hello, Pat!"}


@pytest.mark.parametrize("bad", [5, "nope", "$.", "States.Nope()", "States.Format("])
def test_template_rejects_bad_dynamic_values(bad: Any) -> None:
    with pytest.raises(TemplateError) as info:
        compile_template({"inner": {"x.$": bad}})
    assert info.value.pointer == "/inner/x.$"


def test_payload_size_limit() -> None:
    check_payload_size("x" * (MAX_PAYLOAD_BYTES - 2), "S")
    with pytest.raises(StatesError) as info:
        check_payload_size("x" * (MAX_PAYLOAD_BYTES - 1), "S")
    assert info.value.error == errors.DATA_LIMIT_EXCEEDED
