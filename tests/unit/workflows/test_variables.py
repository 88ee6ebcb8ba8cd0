"""Workflow variables (``Assign``) and JSONata states in the interpreter.

Cases follow the Step Functions developer guide, "Passing data between states with variables"
(https://docs.aws.amazon.com/step-functions/latest/dg/workflow-variables.html) and
"Transforming data with JSONata in Step Functions"
(https://docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html), and AWS's
recorded histories in LocalStack's snapshots where the guide is silent.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.workflows.asl import ExecutionState, compile_machine, errors
from app.workflows.asl.jsonata import compile_expression

from .conftest import env, run

VARS_PAGE = "https://docs.aws.amazon.com/step-functions/latest/dg/workflow-variables.html"
JSONATA_PAGE = "https://docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html"
LAMBDA = "arn:aws:states:::lambda:invoke"


def machine(language: str | None = None, **states: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"StartAt": next(iter(states)), "States": states}
    if language:
        out["QueryLanguage"] = language
    return out


def exited(completion: Any, name: str) -> dict[str, Any]:
    for h in completion.history:
        d = h.to_dict()
        if d["type"].endswith("StateExited") and d["stateExitedEventDetails"]["name"] == name:
            return dict(d["stateExitedEventDetails"])
    raise AssertionError(name)


# -- variables in JSONPath states ----------------------------------------------------------------


def test_assign_then_reference_in_parameters_and_paths() -> None:
    # VARS_PAGE: "Assign": {"productName": "product1", "count": 42, "available": true}
    done = run(
        machine(
            A={
                "Type": "Pass",
                "Assign": {"productName": "product1", "count": 42, "available": True},
                "Next": "B",
            },
            B={
                "Type": "Pass",
                "Parameters": {"name.$": "$productName", "n.$": "States.MathAdd($count, 1)"},
                "End": True,
            },
        )
    )
    assert done.output == {"name": "product1", "n": 43}
    assert exited(done, "A")["assignedVariables"] == {
        "productName": '"product1"',
        "count": "42",
        "available": "true",
    }
    assert exited(done, "A")["assignedVariablesDetails"] == {"truncated": False}
    assert "assignedVariables" not in exited(done, "B")


def test_evaluation_order_output_path_sees_the_value_before_the_state() -> None:
    # AWS's recorded history (LocalStack snapshot BASE_EVALUATION_ORDER_PASS_STATE): the
    # OutputPath "$answer" of the state that reassigns answer reads the old value, 42.
    done = run(
        machine(
            State0={
                "Type": "Pass",
                "Result": {"theQuestion": "What is the answer?"},
                "Assign": {"question.$": "$.theQuestion", "answer": 42},
                "Next": "State1",
            },
            State1={
                "Type": "Pass",
                "InputPath": "$answer",
                "ResultPath": "$.theAnswer",
                "OutputPath": "$answer",
                "Assign": {"answer": "<omitted>"},
                "End": True,
            },
        )
    )
    assert done.output == 42
    assert exited(done, "State0")["assignedVariables"] == {
        "answer": "42",
        "question": '"What is the answer?"',
    }
    assert exited(done, "State1")["assignedVariables"] == {"answer": '"<omitted>"'}


def test_assign_is_a_parallel_assignment() -> None:
    # VARS_PAGE: every Assign expression reads the variables as they were before the state.
    done = run(
        machine(
            A={"Type": "Pass", "Assign": {"x": 1, "y": 2}, "Next": "B"},
            B={"Type": "Pass", "Assign": {"x.$": "$y", "y.$": "$x"}, "Next": "C"},
            C={"Type": "Pass", "Parameters": {"x.$": "$x", "y.$": "$y"}, "End": True},
        )
    )
    assert done.output == {"x": 2, "y": 1}


def test_task_assign_reads_the_result_and_choice_rule_assign() -> None:
    done = run(
        machine(
            T={
                "Type": "Task",
                "Resource": LAMBDA,
                "ResultSelector": {"p.$": "$.Payload"},
                "Assign": {"status.$": "$.Payload.status"},
                "Next": "C",
            },
            C={
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$status",
                        "StringEquals": "ok",
                        "Assign": {"verdict": "good"},
                        "Next": "Done",
                    }
                ],
                "Assign": {"verdict": "bad"},
                "Default": "Done",
            },
            Done={"Type": "Pass", "Parameters": {"v.$": "$verdict"}, "End": True},
        ),
        tasks={"T": {"Payload": {"status": "ok"}}},
    )
    assert done.output == {"v": "good"}


def test_catch_assign_sees_the_error_output() -> None:
    def fail(_: Any) -> Any:
        from app.workflows.asl import TaskError

        raise TaskError("Boom", "bad thing")

    done = run(
        machine(
            T={
                "Type": "Task",
                "Resource": LAMBDA,
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "Assign": {"err.$": "$.Error"}, "Next": "F"}
                ],
                "End": True,
            },
            F={"Type": "Pass", "Parameters": {"e.$": "$err"}, "End": True},
        ),
        tasks={"T": fail},
    )
    assert done.output == {"e": "Boom"}


def test_inner_scopes_read_outer_variables_and_cannot_assign_them() -> None:
    # VARS_PAGE, "Variable scope": Map iterations and Parallel branches see the outer
    # variables; outer states never see inner ones; an inner state may not assign an outer one.
    body = {
        "StartAt": "I",
        "States": {
            "I": {
                "Type": "Pass",
                "Parameters": {"o.$": "$outer"},
                "Assign": {"inner": 1},
                "End": True,
            },
        },
    }
    done = run(
        machine(
            A={"Type": "Pass", "Assign": {"outer": "o"}, "Next": "M"},
            M={"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": body, "Next": "Z"},
            Z={"Type": "Pass", "Parameters": {"o.$": "$outer"}, "End": True},
        ),
        {"items": [1, 2]},
    )
    assert done.status == "SUCCEEDED"
    assert done.output == {"o": "o"}
    hidden = run(
        machine(
            M={"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": body, "Next": "Z"},
            Z={"Type": "Pass", "Parameters": {"i.$": "$inner"}, "End": True},
        ),
        {"items": [1]},
    )
    assert hidden.error == errors.RUNTIME  # $inner does not exist out here
    clash = {
        "StartAt": "I",
        "States": {"I": {"Type": "Pass", "Assign": {"outer": 2}, "End": True}},
    }
    failed = run(
        machine(
            A={"Type": "Pass", "Assign": {"outer": 1}, "Next": "P"},
            P={"Type": "Parallel", "Branches": [clash], "End": True},
        )
    )
    assert failed.error == errors.RUNTIME
    assert "belongs to an outer scope" in (failed.cause or "")


def test_variable_size_limit() -> None:
    big = "x" * (256 * 1024)
    done = run(machine(A={"Type": "Pass", "Assign": {"big.$": "$.s"}, "End": True}), {"s": big})
    assert done.error == errors.DATA_LIMIT_EXCEEDED


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True),
        st.integers() | st.text(max_size=5) | st.none(),
        min_size=1,
        max_size=5,
    )
)
def test_variables_survive_the_json_round_trip(values: dict[str, Any]) -> None:
    definition = machine(
        A={"Type": "Pass", "Assign": values, "Next": "W"},
        W={"Type": "Wait", "Seconds": 5, "Next": "B"},
        B={"Type": "Pass", "Parameters": {f"{k}.$": f"${k}" for k in values}, "End": True},
    )
    memory = run(definition)
    durable = run(definition, roundtrip=True)
    assert memory.output == durable.output == values


def test_states_saved_before_variables_still_load() -> None:
    compiled = compile_machine(machine(W={"Type": "Wait", "Seconds": 5, "End": True}))
    from app.workflows.asl import Start, advance

    first = advance(compiled, None, Start({}), env())
    saved = first.state.to_dict()
    for frame in saved["frames"].values():
        del frame["variables"]
    assert ExecutionState.from_dict(json.loads(json.dumps(saved))).frames[""].variables == {}


# -- JSONata -------------------------------------------------------------------------------------


def test_jsonata_pass_output_and_assign() -> None:
    # JSONATA_PAGE: "Output": {"product": "{% $states.input.product %}"} ...
    done = run(
        machine(
            "JSONata",
            A={
                "Type": "Pass",
                "Assign": {"total": "{% $sum($states.input.items.price) %}"},
                "Output": {"product": "{% $states.input.product %}", "n": 1},
                "Next": "B",
            },
            B={"Type": "Pass", "Output": "{% $total %}", "End": True},
        ),
        {"product": "p", "items": [{"price": 2}, {"price": 3}]},
    )
    assert done.output == 5
    assert exited(done, "A")["output"] == '{"product":"p","n":1}'


def test_jsonata_task_arguments_result_and_choice_condition() -> None:
    seen: list[Any] = []

    def task(command: Any) -> Any:
        seen.append((command.parameters, command.timeout_seconds))
        return {"Payload": {"ok": True}}

    done = run(
        machine(
            "JSONata",
            T={
                "Type": "Task",
                "Resource": LAMBDA,
                "Arguments": {"FunctionName": "f", "Payload": "{% $states.input %}"},
                "TimeoutSeconds": "{% 10 * 3 %}",
                "Output": "{% $states.result.Payload %}",
                "Next": "C",
            },
            C={
                "Type": "Choice",
                "Choices": [{"Condition": "{% $states.input.ok %}", "Next": "Y"}],
                "Default": "N",
            },
            Y={"Type": "Succeed", "Output": {"answer": "yes"}},
            N={"Type": "Fail", "Error": "{% 'E' & 'rr' %}", "Cause": "no"},
        ),
        {"a": 1},
        tasks=task,
    )
    assert seen == [({"FunctionName": "f", "Payload": {"a": 1}}, 30)]
    assert done.output == {"answer": "yes"}


def test_jsonata_undefined_is_query_evaluation_error_with_evaluation_failed_event() -> None:
    # AWS's recorded history (LocalStack snapshot BASE_UNDEFINED_OUTPUT_FIELD).
    done = run(
        machine(
            "JSONata",
            State0={"Type": "Pass", "Output": {"result": "{% $doesNotExist %}"}, "End": True},
        )
    )
    assert done.error == errors.QUERY_EVALUATION_ERROR
    cause = (
        "An error occurred while executing the state 'State0' (entered at the event id #2). "
        "The JSONata expression '$doesNotExist' specified for the field 'Output/result' "
        "returned nothing (undefined)."
    )
    assert done.cause == cause
    failed = [h.to_dict() for h in done.history if h.type == "EvaluationFailed"]
    assert failed[0]["evaluationFailedEventDetails"] == {
        "error": "States.QueryEvaluationError",
        "cause": cause,
        "location": "Output/result",
        "state": "State0",
    }


def test_jsonata_query_error_is_catchable_and_error_output_reaches_catch() -> None:
    done = run(
        machine(
            "JSONata",
            T={
                "Type": "Task",
                "Resource": LAMBDA,
                "Arguments": "{% $undefinedFunction(1) %}",
                "Catch": [
                    {
                        "ErrorEquals": ["States.QueryEvaluationError"],
                        "Output": {"e": "{% $states.errorOutput.Error %}"},
                        "Assign": {"failed": True},
                        "Next": "F",
                    }
                ],
                "End": True,
            },
            F={
                "Type": "Pass",
                "Output": {"e": "{% $states.input.e %}", "f": "{% $failed %}"},
                "End": True,
            },
        ),
        tasks={},
    )
    assert done.output == {"e": "States.QueryEvaluationError", "f": True}


def test_jsonata_map_items_selector_and_wait() -> None:
    done = run(
        machine(
            "JSONata",
            W={"Type": "Wait", "Seconds": "{% $states.input.delay %}", "Next": "M"},
            M={
                "Type": "Map",
                "Items": "{% $states.input.xs %}",
                "ItemSelector": {
                    "v": "{% $states.context.Map.Item.Value * 10 %}",
                    "i": "{% $states.context.Map.Item.Index %}",
                },
                "ItemProcessor": {
                    "StartAt": "I",
                    "States": {"I": {"Type": "Pass", "End": True}},
                },
                "Output": "{% $states.result.v %}",
                "End": True,
            },
        ),
        {"delay": 3, "xs": [1, 2]},
    )
    assert done.output == [10, 20]
    bad = run(
        machine(
            "JSONata",
            M={
                "Type": "Map",
                "Items": "{% 'string' %}",
                "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}},
                "End": True,
            },
        )
    )
    assert bad.error == errors.QUERY_EVALUATION_ERROR
    assert "Expected 'array', but was 'string' for value: \"string\"" in (bad.cause or "")


def test_jsonata_state_in_a_jsonpath_machine_and_step_functions_functions() -> None:
    done = run(
        machine(
            None,
            A={"Type": "Pass", "Parameters": {"xs.$": "$.xs"}, "Next": "B"},
            B={
                "Type": "Pass",
                "QueryLanguage": "JSONata",
                "Output": {
                    "parts": "{% $partition($states.input.xs, 2) %}",
                    "range": "{% $range(0, 10, 5) %}",
                    "hash": "{% $hash('a', 'MD5') %}",
                    "parsed": "{% $parse('{\"k\": [1]}') %}",
                    "uuid": "{% $length($uuid()) %}",
                    "random": "{% $random(1) = $random(1) %}",
                },
                "End": True,
            },
        ),
        {"xs": [1, 2, 3]},
    )
    assert done.output == {
        "parts": [[1, 2], [3]],
        "range": [0, 5, 10],
        "hash": "0cc175b9c0f1b6a831c399e269772661",
        "parsed": {"k": [1]},
        "uuid": 36,
        "random": True,
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abc", min_size=1, max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None)
@given(
    json_values.filter(lambda v: v is not None),
    st.sampled_from(
        ["$states.input", "[$states.input]", "{'w': $states.input}", "$count([$states.input])"]
    ),
)
def test_jsonata_pass_output_equals_evaluating_the_expression(value: Any, text: str) -> None:
    done = run(
        machine("JSONata", A={"Type": "Pass", "Output": f"{{% {text} %}}", "End": True}),
        {"v": value},
    )
    direct = compile_expression(text).evaluate({"states": {"input": {"v": value}}}, env())
    assert done.output == direct
