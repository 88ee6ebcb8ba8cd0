"""Error names of the Amazon States Language and the exceptions the interpreter raises.

Two families:

* :class:`StatesError` is a *runtime* error of one execution: it has an ``error`` name (one of
  the ``States.*`` names below, or a name a task reported) and an optional ``cause``. It is what
  ``Retry`` and ``Catch`` match against.
* :class:`InvalidDefinition` is raised for a definition that does not validate. It carries the
  diagnostics in the shape of ``ValidateStateMachineDefinition`` and a message in the shape of
  ``CreateStateMachine``'s ``InvalidDefinition`` error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# --- Predefined error names (ASL spec, Appendix A; Step Functions developer guide) -------------

ALL: Final = "States.ALL"
DATA_LIMIT_EXCEEDED: Final = "States.DataLimitExceeded"
RUNTIME: Final = "States.Runtime"
TIMEOUT: Final = "States.Timeout"
HEARTBEAT_TIMEOUT: Final = "States.HeartbeatTimeout"
TASK_FAILED: Final = "States.TaskFailed"
PERMISSIONS: Final = "States.Permissions"
RESULT_PATH_MATCH_FAILURE: Final = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE: Final = "States.ParameterPathFailure"
QUERY_EVALUATION_ERROR: Final = "States.QueryEvaluationError"
BRANCH_FAILED: Final = "States.BranchFailed"
NO_CHOICE_MATCHED: Final = "States.NoChoiceMatched"
INTRINSIC_FAILURE: Final = "States.IntrinsicFailure"
EXCEED_TOLERATED_FAILURE_THRESHOLD: Final = "States.ExceedToleratedFailureThreshold"
ITEM_READER_FAILED: Final = "States.ItemReaderFailed"
RESULT_WRITER_FAILED: Final = "States.ResultWriterFailed"

#: Every ``States.*`` name a definition may use in ``ErrorEquals``.
KNOWN_ERROR_NAMES: Final = frozenset(
    {
        ALL,
        DATA_LIMIT_EXCEEDED,
        RUNTIME,
        TIMEOUT,
        HEARTBEAT_TIMEOUT,
        TASK_FAILED,
        PERMISSIONS,
        RESULT_PATH_MATCH_FAILURE,
        PARAMETER_PATH_FAILURE,
        QUERY_EVALUATION_ERROR,
        BRANCH_FAILED,
        NO_CHOICE_MATCHED,
        INTRINSIC_FAILURE,
        EXCEED_TOLERATED_FAILURE_THRESHOLD,
        ITEM_READER_FAILED,
        RESULT_WRITER_FAILED,
        "States.Http.Socket",
    }
)


class StatesError(Exception):
    """A runtime error inside one execution.

    ``state_scoped`` marks errors the interpreter itself raised while processing a state (path
    failures, intrinsic failures, ...). Step Functions prefixes their cause with
    ``An error occurred while executing the state '<name>' (entered at the event id #<n>).``;
    errors a task reported, or a Fail state raised, are passed through unchanged.
    """

    def __init__(self, error: str, cause: str | None = None, *, state_scoped: bool = True):
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause
        self.state_scoped = state_scoped


def runtime_error(cause: str) -> StatesError:
    """``States.Runtime``: never retried, never caught; it always fails the execution."""
    return StatesError(RUNTIME, cause)


# --- Definition validation -----------------------------------------------------------------------

Severity = Literal["ERROR", "WARNING"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One element of ``ValidateStateMachineDefinition``'s ``diagnostics``."""

    severity: Severity
    code: str
    message: str
    location: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"severity": self.severity, "code": self.code, "message": self.message}
        if self.location is not None:
            out["location"] = self.location
        return out

    def flat(self) -> str:
        """``<CODE>: <message> at <location>``, as CreateStateMachine prints it (``null`` when
        there is no location, which is what Step Functions prints too)."""
        location = self.location if self.location is not None else "null"
        return f"{self.code}: {self.message} at {location}"


class InvalidDefinition(ValueError):
    """The definition does not validate; ``diagnostics`` holds the ERROR diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        flat = [d.flat() for d in diagnostics]
        body = f"'{flat[0]}'" if len(flat) == 1 else "'" + ", ".join(f"'{f}'" for f in flat) + "'"
        super().__init__(f"Invalid State Machine Definition: {body}")
