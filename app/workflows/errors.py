"""Step Functions' API errors, with AWS's codes and message shapes (they reach boto3 unchanged).

AWS words most of them as ``<Title Case Code>: '<detail>'``, e.g.
``State Machine Does Not Exist: 'arn:aws:states:...:stateMachine:x'``; :func:`sfn_error` builds
that shape so every raise site reads like the message the caller will see.
"""

from __future__ import annotations

from app.aws.errors import AwsError


def sfn_error(code: str, title: str, detail: str) -> AwsError:
    return AwsError(code, f"{title}: '{detail}'")


def state_machine_does_not_exist(arn: str) -> AwsError:
    return sfn_error("StateMachineDoesNotExist", "State Machine Does Not Exist", arn)


def state_machine_already_exists(arn: str) -> AwsError:
    return sfn_error("StateMachineAlreadyExists", "State Machine Already Exists", arn)


def state_machine_deleting(arn: str) -> AwsError:
    return sfn_error("StateMachineDeleting", "State Machine Is Being Deleted", arn)


def execution_does_not_exist(arn: str) -> AwsError:
    return sfn_error("ExecutionDoesNotExist", "Execution Does Not Exist", arn)


def execution_already_exists(arn: str) -> AwsError:
    return sfn_error("ExecutionAlreadyExists", "Execution Already Exists", arn)


def invalid_arn(detail: str) -> AwsError:
    return sfn_error("InvalidArn", "Invalid Arn", detail)


def invalid_name(name: str) -> AwsError:
    return sfn_error("InvalidName", "Invalid Name", name)


def invalid_definition(message: str) -> AwsError:
    """``message`` is already ``Invalid State Machine Definition: '...'`` (InvalidDefinition)."""
    return AwsError("InvalidDefinition", message)


def invalid_input(detail: str) -> AwsError:
    return sfn_error("InvalidExecutionInput", "Invalid State Machine Execution Input", detail)


def invalid_output(detail: str) -> AwsError:
    return sfn_error("InvalidOutput", "Invalid Output", detail)


def invalid_token(detail: str = "Invalid token") -> AwsError:
    return sfn_error("InvalidToken", "Invalid Token", detail)


def task_timed_out() -> AwsError:
    """What AWS answers for the token of a task that finished, timed out or was cancelled."""
    return sfn_error("TaskTimedOut", "Task Timed Out", "Provided task does not exist anymore")


def task_does_not_exist() -> AwsError:
    return sfn_error("TaskDoesNotExist", "Task Does Not Exist", "Provided task does not exist")


def type_not_supported(message: str) -> AwsError:
    return AwsError("StateMachineTypeNotSupported", message)


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def missing_parameter(message: str) -> AwsError:
    return AwsError("MissingRequiredParameter", message)


def resource_not_found(arn: str) -> AwsError:
    return sfn_error("ResourceNotFound", "Resource not found", arn)


def too_many_tags(arn: str) -> AwsError:
    return sfn_error("TooManyTags", "Too many tags (at most 50)", arn)
