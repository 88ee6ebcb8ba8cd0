"""Definition validation, in ValidateStateMachineDefinition's shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.workflows.asl import InvalidDefinition, compile_machine
from app.workflows.asl.validate import ensure_valid, validate_definition, validation_result


def diags(definition: Any) -> list[tuple[str, str, str, str | None]]:
    return [(d.severity, d.code, d.message, d.location) for d in validate_definition(definition)]


def errors_of(definition: Any) -> list[tuple[str, str, str | None]]:
    return [(c, m, loc) for s, c, m, loc in diags(definition) if s == "ERROR"]


def machine(**states: Any) -> dict[str, Any]:
    return {"StartAt": next(iter(states)), "States": states}


PASS_END = {"Type": "Pass", "End": True}


def test_valid_definition() -> None:
    assert validation_result(machine(A=PASS_END)) == {
        "result": "OK",
        "diagnostics": [],
        "truncated": False,
    }


def test_required_top_level_fields() -> None:
    assert errors_of({}) == [
        ("SCHEMA_VALIDATION_FAILED", "These fields are required: [States, StartAt]", "/")
    ]
    assert errors_of({"States": {"A": PASS_END}}) == [
        ("SCHEMA_VALIDATION_FAILED", "These fields are required: [StartAt]", "/")
    ]


def test_not_json_and_not_an_object() -> None:
    assert errors_of("not a definition")[0][0] == "INVALID_JSON_DESCRIPTION"
    assert errors_of("")[0][0] == "MISSING_DESCRIPTION"
    assert errors_of("[1]") == [
        ("SCHEMA_VALIDATION_FAILED", "Definition must be a valid JSON object", None)
    ]


def test_missing_next_is_reported_at_the_state() -> None:
    assert errors_of(machine(Foo={"Type": "Pass"})) == [
        ("SCHEMA_VALIDATION_FAILED", 'The field "Next" is required but was missing', "/States/Foo"),
        ("MISSING_END_STATE", "Workflow has no terminal state", None),
    ]


def test_missing_transition_target_and_raising_form() -> None:
    definition = machine(Foo={"Type": "Pass", "Next": "Bar"}, Done={"Type": "Succeed"})
    assert ("MISSING_TRANSITION_TARGET", "Missing 'Next' target: Bar", "/States/Foo/Next") in (
        errors_of(definition)
    )
    with pytest.raises(InvalidDefinition) as info:
        ensure_valid(definition)
    assert str(info.value).startswith(
        "Invalid State Machine Definition: ''MISSING_TRANSITION_TARGET: Missing 'Next' target: "
        "Bar at /States/Foo/Next'"
    )
    with pytest.raises(InvalidDefinition):
        compile_machine(definition)


def test_start_at_must_exist() -> None:
    assert errors_of({"StartAt": "Nope", "States": {"A": PASS_END}}) == [
        ("MISSING_TRANSITION_TARGET", "Missing 'Next' target: Nope", "/StartAt")
    ]


def test_unreachable_state() -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "B"},
            "B": {"Type": "Pass", "Next": "A"},
            "C": PASS_END,
        },
    }
    assert errors_of(definition) == [
        ("MISSING_TRANSITION_TARGET", 'State "C" is not reachable.', "/States/C")
    ]


def test_missing_end_state_suppresses_reachability_and_comes_last() -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "NOPE"}}}
    assert errors_of(definition) == [
        ("MISSING_TRANSITION_TARGET", "Missing 'Next' target: NOPE", "/States/A/Next"),
        ("MISSING_END_STATE", "Workflow has no terminal state", None),
    ]


def test_nested_unreachable_states_and_locations() -> None:
    definition = machine(
        P={
            "Type": "Parallel",
            "End": True,
            "Branches": [{"StartAt": "W", "States": {"W": PASS_END, "Ghost": PASS_END}}],
        }
    )
    assert errors_of(definition) == [
        (
            "MISSING_TRANSITION_TARGET",
            'State "Ghost" is not reachable.',
            "/States/P/Branches[0]/States/Ghost",
        )
    ]
    inner_loop = machine(
        M={
            "Type": "Map",
            "End": True,
            "ItemProcessor": {
                "StartAt": "A",
                "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}},
            },
        }
    )
    assert errors_of(inner_loop) == []  # MISSING_END_STATE is top-level only


def test_duplicate_state_names_across_branches_and_in_json_text() -> None:
    definition = machine(
        A={
            "Type": "Parallel",
            "Next": "B",
            "Branches": [{"StartAt": "B", "States": {"B": PASS_END}}],
        },
        B=PASS_END,
    )
    assert ("DUPLICATE_STATE_NAME", "Duplicate State name: B", "/States/B") in errors_of(definition)
    text = (
        '{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}, "A": {"Type": "Succeed"}}}'
    )
    assert ("DUPLICATE_STATE_NAME", "Duplicate State name: A", "/States/A") in errors_of(text)


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"Type": "Pass", "End": True, "TimeoutSeconds": 5}, "TimeoutSeconds"),
        ({"Type": "Pass", "End": True, "Catch": []}, "Catch"),
        ({"Type": "Wait", "Seconds": 1, "End": True, "Retry": []}, "Retry"),
        (
            {
                "Type": "Parallel",
                "End": True,
                "TimeoutSeconds": 5,
                "Branches": [{"StartAt": "X", "States": {"X": PASS_END}}],
            },
            "TimeoutSeconds",
        ),
        ({"Type": "Succeed", "Bogus": 1}, "Bogus"),
        ({"Type": "Fail", "ResultPath": "$"}, "ResultPath"),
    ],
)
def test_fields_not_supported_by_a_state_type(state: dict[str, Any], field: str) -> None:
    assert ("SCHEMA_VALIDATION_FAILED", f"Field '{field}' is not supported", "/States/S") in (
        errors_of(machine(S=state))
    )


def test_bad_paths() -> None:
    definition = machine(
        S={
            "Type": "Pass",
            "End": True,
            "InputPath": "nope",
            "ResultPath": "$.a[*]",
            "Parameters": {"x.$": "$.["},
        }
    )
    found = errors_of(definition)
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "The value for the field 'InputPath' must be a valid JSONPath",
        "/States/S/InputPath",
    ) in found
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "The value for the field 'ResultPath' must be a valid Reference Path",
        "/States/S/ResultPath",
    ) in found
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "The value for the field 'x.$' must be a valid JSONPath or a valid intrinsic function call",
        "/States/S/Parameters/x.$",
    ) in found


def test_bad_intrinsic_in_template() -> None:
    definition = machine(
        S={
            "Type": "Pass",
            "End": True,
            "Parameters": {"x.$": "States.Format('{}')", "y.$": "States.Nope()"},
        }
    )
    assert [loc for _, _, loc in errors_of(definition)] == ["/States/S/Parameters/y.$"]


def test_choice_rules_shape() -> None:
    definition = machine(
        C={
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.a", "Next": "D"},
                {"Variable": "$.a", "StringEquals": 5, "Next": "D"},
                {"And": [{"Variable": "$.a", "IsNull": True, "Next": "D"}], "Next": "D"},
                {"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "D"},
                {"Variable": "$.a", "NumericEquals": 1},
                {"Variable": "$.a", "BooleanEquals": True, "Next": "Ghost"},
            ],
            "Default": "D",
        },
        D={"Type": "Succeed"},
    )
    found = errors_of(definition)
    locations = [loc for _, _, loc in found]
    assert "/States/C/Choices[0]" in locations
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "Expected value of type [STRING]",
        "/States/C/Choices[1]/StringEquals",
    ) in found
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "Field 'Next' is not supported",
        "/States/C/Choices[2]/And[0]",
    ) in found
    assert "/States/C/Choices[3]/TimestampEquals" in locations
    assert (
        "SCHEMA_VALIDATION_FAILED",
        'The field "Next" is required but was missing',
        "/States/C/Choices[4]",
    ) in found
    assert (
        "MISSING_TRANSITION_TARGET",
        "Missing 'Next' target: Ghost",
        "/States/C/Choices[5]/Next",
    ) in found
    assert errors_of(machine(C={"Type": "Choice", "Choices": []}))[0][1] == (
        "The field 'Choices' must not be empty"
    )


def test_retry_and_catch_rules() -> None:
    definition = machine(
        T={
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "End": True,
            "Retry": [
                {"ErrorEquals": ["States.ALL"]},
                {
                    "ErrorEquals": ["States.ALL", "X"],
                    "IntervalSeconds": 0,
                    "MaxAttempts": -1,
                    "BackoffRate": 0.5,
                    "MaxDelaySeconds": 31622401,
                    "JitterStrategy": "SOME",
                },
                {"ErrorEquals": ["States.Bogus"]},
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "T"}, {"ErrorEquals": ["E"]}],
        }
    )
    found = errors_of(definition)
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "'States.ALL' must appear in the last retrier",
        "/States/T/Retry[0]",
    ) in found
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "'States.ALL' must appear alone in the 'ErrorEquals' array",
        "/States/T/Retry[1]/ErrorEquals",
    ) in found
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "The value for the field 'IntervalSeconds' must be between 1 and 99999999",
        "/States/T/Retry[1]/IntervalSeconds",
    ) in found
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "The value for the field 'MaxAttempts' must be between 0 and 99999999",
        "/States/T/Retry[1]/MaxAttempts",
    ) in found
    assert "/States/T/Retry[1]/BackoffRate" in [loc for *_, loc in found]
    assert "/States/T/Retry[1]/MaxDelaySeconds" in [loc for *_, loc in found]
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "Value should be one of the following: [FULL, NONE]",
        "/States/T/Retry[1]/JitterStrategy",
    ) in found
    assert "/States/T/Retry[2]/ErrorEquals[0]" in [loc for *_, loc in found]
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "'States.ALL' must appear in the last catcher",
        "/States/T/Catch[0]",
    ) in found
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "These fields are required: [Next]",
        "/States/T/Catch[1]",
    ) in found


def test_task_timeouts() -> None:
    definition = machine(
        T={
            "Type": "Task",
            "Resource": "r",
            "End": True,
            "TimeoutSeconds": 5,
            "HeartbeatSeconds": 5,
            "TimeoutSecondsPath": "$.t",
        }
    )
    found = [m for _, m, _ in errors_of(definition)]
    assert (
        "A Task state cannot include both field 'TimeoutSeconds' and 'TimeoutSecondsPath'" in found
    )
    assert (
        "The value for the field 'HeartbeatSeconds' must be smaller than the value for the "
        "field 'TimeoutSeconds'"
    ) in found
    assert errors_of(machine(T={"Type": "Task", "End": True})) == [
        ("SCHEMA_VALIDATION_FAILED", "These fields are required: [Resource]", "/States/T")
    ]


def test_wait_and_fail_rules() -> None:
    assert len(errors_of(machine(W={"Type": "Wait", "End": True}))) == 1
    assert (
        len(
            errors_of(
                machine(
                    W={
                        "Type": "Wait",
                        "Seconds": 1,
                        "Timestamp": "2024-01-01T00:00:00Z",
                        "End": True,
                    }
                )
            )
        )
        == 1
    )
    assert errors_of(machine(W={"Type": "Wait", "Timestamp": "tomorrow", "End": True}))[0][2] == (
        "/States/W/Timestamp"
    )
    assert errors_of(machine(F={"Type": "Fail", "Error": "E", "ErrorPath": "$.e"})) == [
        (
            "SCHEMA_VALIDATION_FAILED",
            "A Fail state cannot include both field 'Error' and 'ErrorPath'",
            "/States/F",
        )
    ]
    assert errors_of(machine(F={"Type": "Fail", "CausePath": "States.Format('{}', $.c)"})) == []


def test_map_rules() -> None:
    proc = {"StartAt": "P", "States": {"P": PASS_END}}
    assert errors_of(machine(M={"Type": "Map", "End": True})) == [
        ("SCHEMA_VALIDATION_FAILED", "These fields are required: [ItemProcessor]", "/States/M")
    ]
    found = errors_of(
        machine(
            M={
                "Type": "Map",
                "End": True,
                "ItemProcessor": proc,
                "MaxConcurrency": -1,
                "ItemSelector": {},
                "Parameters": {},
            }
        )
    )
    assert [loc for *_, loc in found] == ["/States/M", "/States/M/MaxConcurrency"]
    distributed = machine(
        M={
            "Type": "Map",
            "End": True,
            "ItemReader": {},
            "ItemProcessor": {**proc, "ProcessorConfig": {"Mode": "DISTRIBUTED"}},
        }
    )
    # distributed Map (see test_distributed_map.py): ExecutionType and the reader's fields
    assert [loc for *_, loc in errors_of(distributed)] == [
        "/States/M/ItemProcessor/ProcessorConfig",
        "/States/M/ItemReader",
    ]
    assert (
        errors_of(
            machine(
                M={
                    "Type": "Map",
                    "End": True,
                    "Iterator": proc,
                    "Parameters": {"x.$": "$$.Map.Item.Value"},
                }
            )
        )
        == []
    )


def test_jsonata_is_accepted_and_its_fields_checked() -> None:
    assert errors_of({**machine(A=PASS_END), "QueryLanguage": "JSONata"}) == []
    found = errors_of(
        {
            **machine(A={"Type": "Pass", "InputPath": "$.a", "Output": "{% $x( %}", "End": True}),
            "QueryLanguage": "JSONata",
        }
    )
    assert [where for _, _, where in found] == ["/States/A/InputPath", "/States/A/Output"]
    found = errors_of(machine(A={"Type": "Pass", "Output": {"a": 1}, "End": True}))
    assert [where for _, _, where in found] == ["/States/A/Output"]
    downgrade = {
        **machine(A={"Type": "Pass", "QueryLanguage": "JSONPath", "End": True}),
        "QueryLanguage": "JSONata",
    }
    assert [where for _, _, where in errors_of(downgrade)] == ["/States/A/QueryLanguage"]


def test_assign_names_and_states() -> None:
    ok = machine(A={"Type": "Pass", "Assign": {"a_1": 1, "b.$": "$.x"}, "End": True})
    assert errors_of(ok) == []
    bad = machine(A={"Type": "Pass", "Assign": {"1a": 1, "states": 2}, "End": True})
    assert [where for _, _, where in errors_of(bad)] == [
        "/States/A/Assign/1a",
        "/States/A/Assign/states",
    ]
    assert errors_of(machine(A={"Type": "Succeed", "Assign": {"a": 1}}))


def test_warnings_do_not_fail_validation() -> None:
    definition = machine(
        A={"Type": "Pass", "Parameters": {"x": "$.a"}, "Result": {"y.$": "$.b"}, "Next": "W"},
        W={"Type": "Wait", "SecondsPath": "$.s", "End": True},
    )
    found = diags(definition)
    assert ("WARNING", "NO_DOLLAR") in [(s, c) for s, c, _, _ in found]
    assert ("WARNING", "PASS_RESULT_IS_STATIC") in [(s, c) for s, c, _, _ in found]
    assert validation_result(definition)["result"] == "OK"
    nopath = machine(W={"Type": "Wait", "Timestamp": "$.when", "End": True})
    assert ("WARNING", "NO_PATH") in [(s, c) for s, c, _, _ in diags(nopath)]


def test_top_level_timeout_and_unknown_fields() -> None:
    found = errors_of({**machine(A=PASS_END), "TimeoutSeconds": 0, "Extra": 1})
    assert ("SCHEMA_VALIDATION_FAILED", "Field 'Extra' is not supported", "/") in found
    assert (
        "SCHEMA_VALIDATION_FAILED",
        "The value for the field 'TimeoutSeconds' must be between 1 and 99999999",
        "/TimeoutSeconds",
    ) in found


def test_string_definitions_are_parsed() -> None:
    assert errors_of(json.dumps(machine(A=PASS_END))) == []
    assert ensure_valid(json.dumps(machine(A=PASS_END)))["StartAt"] == "A"


def test_http_status_code_errors_are_predefined_names() -> None:
    from app.workflows.asl import validate_definition

    definition = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {"ApiEndpoint": "http://x", "Method": "GET"},
                "Catch": [{"ErrorEquals": ["States.Http.StatusCode.404"], "Next": "S"}],
                "End": True,
            },
            "S": {"Type": "Succeed"},
        },
    }
    assert validate_definition(definition) == []
    definition["States"]["T"]["Catch"][0]["ErrorEquals"] = ["States.Http.StatusCode.4xx"]  # type: ignore[index]
    assert [d.message for d in validate_definition(definition)] == [
        "'States.Http.StatusCode.4xx' is not a predefined error name"
    ]
