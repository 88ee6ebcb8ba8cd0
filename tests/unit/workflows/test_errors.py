"""Error names and the InvalidDefinition message format."""

from __future__ import annotations

from app.workflows.asl import errors
from app.workflows.asl.errors import Diagnostic, InvalidDefinition, StatesError


def test_invalid_definition_message_for_one_diagnostic() -> None:
    exc = InvalidDefinition(
        [
            Diagnostic(
                "ERROR",
                "MISSING_TRANSITION_TARGET",
                "Missing 'Next' target: Bar",
                "/States/Foo/Next",
            )
        ]
    )
    assert str(exc) == (
        "Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: "
        "Bar at /States/Foo/Next'"
    )


def test_invalid_definition_message_for_several_and_for_no_location() -> None:
    exc = InvalidDefinition(
        [
            Diagnostic("ERROR", "DUPLICATE_STATE_NAME", "Duplicate State name: A", "/States/A"),
            Diagnostic("ERROR", "MISSING_END_STATE", "Workflow has no terminal state"),
        ]
    )
    assert str(exc) == (
        "Invalid State Machine Definition: ''DUPLICATE_STATE_NAME: Duplicate State name: A at "
        "/States/A', 'MISSING_END_STATE: Workflow has no terminal state at null''"
    )


def test_diagnostic_dict_omits_missing_location() -> None:
    assert Diagnostic("ERROR", "X", "m").to_dict() == {
        "severity": "ERROR",
        "code": "X",
        "message": "m",
    }


def test_states_error() -> None:
    err = StatesError(errors.TASK_FAILED, "boom", state_scoped=False)
    assert (err.error, err.cause, err.state_scoped) == ("States.TaskFailed", "boom", False)
    assert errors.runtime_error("x").error == "States.Runtime"
    assert errors.ALL in errors.KNOWN_ERROR_NAMES
