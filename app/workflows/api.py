"""``AWSStepFunctions.*`` on the AWS JSON endpoint, so boto3's ``stepfunctions`` client works.

Importing this module registers the operations. This module only translates the protocol: the
kit has checked the parameters against botocore's model (required members, lengths, enums,
ranges), the Settings arrive on the :class:`AwsCall`, and the work is the workflows services'
(``service.start`` starts an execution for every entry point). Each operation is one unit of
work: a transaction that commits, then whatever the step asked to send. Errors are Step
Functions' own (``StateMachineDoesNotExist``, ``ExecutionAlreadyExists``, ``InvalidDefinition``,
``TaskTimedOut``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import tagging
from app.aws.errors import AwsError
from app.aws.operations import AwsCall, Handler, registry
from app.aws.validate import not_null, validation_error
from app.db import utcnow
from app.workflows import callbacks, errors, express, machines, service
from app.workflows.activities import arns as activity_arns
from app.workflows.activities import service as activities
from app.workflows.map_runs import service as map_runs
from app.workflows.models import StateMachine
from app.workflows.store import dump

PREFIX: Final = "AWSStepFunctions"
T = TypeVar("T")


def _unit(call: AwsCall, work: Callable[[Session], T]) -> T:
    return service.unit_of_work(call.require_settings(), work)


def _op(name: str, *, write: bool) -> Callable[[Handler], Handler]:
    """Register ``AWSStepFunctions.<name>``; botocore's model checks its parameters first."""
    return registry.operation(PREFIX, name, write=write)


def _machine_view(machine: StateMachine, definition: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        "stateMachineArn": machine.arn,
        "name": machine.name,
        "status": machine.status,
        "definition": definition,
        "roleArn": machine.role_arn,
        "type": machine.type,
        "creationDate": machine.created_at,
        "loggingConfiguration": machine.logging_configuration or service.DEFAULT_LOGGING,
        "tracingConfiguration": {"enabled": False},
        "revisionId": machine.revision_id,
    }
    if machine.description:
        view["description"] = machine.description
    return view


# --- state machines -------------------------------------------------------------------------


@_op("CreateStateMachine", write=True)
def create_state_machine(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        machine, _ = service.create_machine(
            session,
            call.require_settings(),
            name=params["name"],
            definition=params["definition"],
            role_arn=params["roleArn"],
            machine_type=params.get("type") or "STANDARD",
            logging=params.get("loggingConfiguration"),
            description=params.get("versionDescription"),
            now=utcnow(),
        )
        _set_tags(session, machine.arn, params.get("tags"))
        return {"stateMachineArn": machine.arn, "creationDate": machine.created_at}

    return _unit(call, work)


# --- tags: TagResource, UntagResource, ListTagsForResource (state machines) -------------------


def _tag_key(session: Session, arn: str) -> str:
    """State machines and activities are tagged under their ARN without its region (they are
    not partitioned by region); a missing one is ``ResourceNotFound``, as Step Functions
    answers."""
    if isinstance(arn, str) and activity_arns.is_activity(arn):
        return activities.tag_key(session, arn)
    try:
        machine = service.get_machine(session, arn)
    except AwsError:
        raise errors.resource_not_found(arn) from None
    return "states:" + machine.arn.split(":", 5)[5]


def _set_tags(session: Session, arn: str, tags: list[dict[str, Any]] | None) -> None:
    if any(t.get("key") is None for t in tags or ()):
        raise errors.validation("Every tag needs a key.")  # the model leaves both optional
    given = {str(t["key"]): str(t.get("value", "")) for t in tags or ()}
    if not given:
        return
    try:
        tagging.tag(session, _tag_key(session, arn), given)
    except tagging.TagError as error:
        if error.too_many:
            raise errors.too_many_tags(arn) from None
        raise errors.validation(error.message) from None


@_op("TagResource", write=True)
def tag_resource(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    _unit(call, lambda session: _set_tags(session, params["resourceArn"], params["tags"]))
    return {}


@_op("UntagResource", write=True)
def untag_resource(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> None:
        tagging.untag(session, _tag_key(session, params["resourceArn"]), params["tagKeys"])

    _unit(call, work)
    return {}


@_op("ListTagsForResource", write=False)
def list_tags_for_resource(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, str]:
        return tagging.tags_of(session, _tag_key(session, params["resourceArn"]))

    tags = _unit(call, work)
    return {"tags": [{"key": k, "value": v} for k, v in sorted(tags.items())]}


@_op("DescribeStateMachine", write=False)
def describe_state_machine(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        machine = service.get_machine(session, params["stateMachineArn"])
        return _machine_view(machine, service.definition_of(session, machine.definition_hash))

    return _unit(call, work)


@_op("UpdateStateMachine", write=True)
def update_state_machine(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        machine = service.get_machine(session, params["stateMachineArn"])
        service.update_machine(
            session,
            machine,
            definition=params.get("definition"),
            role_arn=params.get("roleArn"),
            logging=params.get("loggingConfiguration"),
            now=utcnow(),
            settings=call.require_settings(),
        )
        return {"updateDate": machine.updated_at, "revisionId": machine.revision_id}

    return _unit(call, work)


@_op("ListStateMachines", write=False)
def list_state_machines(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        page = service.list_machines(session, params.get("maxResults"), params.get("nextToken"))
        out: dict[str, Any] = {
            "stateMachines": [
                {
                    "stateMachineArn": m.arn,
                    "name": m.name,
                    "type": m.type,
                    "creationDate": m.created_at,
                }
                for m in page.items
            ]
        }
        if page.next_token:
            out["nextToken"] = page.next_token
        return out

    return _unit(call, work)


@_op("DeleteStateMachine", write=True)
def delete_state_machine(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> None:
        service.delete_machine(session, params["stateMachineArn"])
        tagging.forget(session, ["states:" + str(params["stateMachineArn"]).split(":", 5)[-1]])

    _unit(call, work)
    return {}


@_op("ValidateStateMachineDefinition", write=False)
def validate_state_machine_definition(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    result = machines.diagnostics(
        params["definition"], params.get("type"), call.require_settings().egress.aws_sdk_allow
    )
    if params.get("severity") == "ERROR":
        result["diagnostics"] = [d for d in result["diagnostics"] if d["severity"] == "ERROR"]
    limit = params.get("maxResults")
    if isinstance(limit, int) and 0 < limit < len(result["diagnostics"]):
        result["diagnostics"] = result["diagnostics"][:limit]
        result["truncated"] = True
    return result


# --- executions -----------------------------------------------------------------------------


@_op("StartExecution", write=True)
def start_execution(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    arn, start_date = service.start(
        call.require_settings(), params["stateMachineArn"], params.get("name"), params.get("input")
    )
    return {"executionArn": arn, "startDate": start_date}


def _billed(start: datetime, stop: datetime) -> dict[str, int]:
    millis = (stop - start).total_seconds() * 1000
    return {
        "billedMemoryUsedInMB": 64,
        "billedDurationInMilliseconds": math.ceil(millis / 100) * 100,
    }


@_op("StartSyncExecution", write=True)
def start_sync_execution(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> tuple[StateMachine, Any]:
        machine = service.get_machine(session, params["stateMachineArn"])
        if machine.type != "EXPRESS":
            raise errors.type_not_supported(
                "This operation is not supported by this type of state machine"
            )
        if machine.status == "DELETING":
            raise errors.state_machine_deleting(machine.arn)
        return machine, machines.compiled(session, machine.definition_hash)

    machine, compiled = _unit(call, work)
    input_text, _ = service.parse_input(params.get("input"))
    settings = call.require_settings()
    start = express.new_start(settings, machine, params.get("name"), input_text)
    result = express.run(settings, compiled, start)
    out: dict[str, Any] = {
        "executionArn": start.execution_id,
        "stateMachineArn": machine.arn,
        "name": start.execution_name,
        "startDate": result.start_date,
        "stopDate": result.stop_date,
        "status": result.status,
        "input": input_text,
        "inputDetails": {"included": True},
        "billingDetails": _billed(result.start_date, result.stop_date),
    }
    if result.status == "SUCCEEDED":
        out["output"] = dump(result.output)
        out["outputDetails"] = {"included": True}
    else:
        out.update({k: v for k, v in (("error", result.error), ("cause", result.cause)) if v})
    return out


@_op("StopExecution", write=True)
def stop_execution(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    stopped = callbacks.stop(
        call.require_settings(), params["executionArn"], params.get("error"), params.get("cause")
    )
    return {"stopDate": stopped}


@_op("DescribeExecution", write=False)
def describe_execution(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        view = service.get_execution(session, params["executionArn"])
        e = view.execution
        out: dict[str, Any] = {
            "executionArn": e.arn,
            "stateMachineArn": view.state_machine_arn,
            "name": e.name,
            "status": e.status,
            "startDate": e.start_date,
            "input": e.input,
            "inputDetails": {"included": True},
            "redriveCount": 0,
            "redriveStatus": "NOT_REDRIVABLE",
        }
        if e.stop_date is not None:
            out["stopDate"] = e.stop_date
        if e.output is not None:
            out["output"] = e.output
            out["outputDetails"] = {"included": True}
        if e.error is not None:
            out["error"] = e.error
        if e.cause is not None:
            out["cause"] = e.cause
        run = map_runs.map_run_of(session, e.id)
        if run is not None:
            out["mapRunArn"] = run
        return out

    return _unit(call, work)


@_op("DescribeStateMachineForExecution", write=False)
def describe_state_machine_for_execution(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        view = service.get_execution(session, params["executionArn"])
        machine = service.get_machine(session, view.state_machine_arn)
        definition = service.definition_of(session, view.execution.definition_hash)
        return {
            "stateMachineArn": machine.arn,
            "name": machine.name,
            "definition": definition,
            "roleArn": machine.role_arn,
            "updateDate": machine.updated_at,
            "loggingConfiguration": machine.logging_configuration or service.DEFAULT_LOGGING,
            "tracingConfiguration": {"enabled": False},
            "revisionId": machine.revision_id,
        }

    return _unit(call, work)


@_op("ListExecutions", write=False)
def list_executions(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    """By state machine, or by Map Run (``mapRunArn``: a distributed Map's children)."""
    map_run_arn = params.get("mapRunArn")
    if params.get("stateMachineArn") is None and map_run_arn is None:
        raise validation_error([not_null("stateMachineArn")])
    if params.get("stateMachineArn") is not None and map_run_arn is not None:
        raise errors.validation("Only one of stateMachineArn and mapRunArn can be specified")

    def work(session: Session) -> dict[str, Any]:
        if map_run_arn is not None:
            run = map_runs.get(session, map_run_arn)
            found = session.scalar(
                select(StateMachine).where(StateMachine.arn == run.state_machine_arn)
            )
            if found is None:  # no child started yet
                return {"executions": []}
            machine = found
        else:
            machine = service.get_machine(session, params["stateMachineArn"])
        page = service.list_executions(
            session,
            machine,
            params.get("statusFilter"),
            params.get("maxResults"),
            params.get("nextToken"),
            map_run_arn=map_run_arn,
        )
        items = []
        for e in page.items:
            item = {
                "executionArn": e.arn,
                "stateMachineArn": machine.arn,
                "name": e.name,
                "status": e.status,
                "startDate": e.start_date,
            }
            if e.stop_date is not None:
                item["stopDate"] = e.stop_date
            if map_run_arn is not None:
                item["mapRunArn"] = map_run_arn
            items.append(item)
        out: dict[str, Any] = {"executions": items}
        if page.next_token:
            out["nextToken"] = page.next_token
        return out

    return _unit(call, work)


@_op("GetExecutionHistory", write=False)
def get_execution_history(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        view = service.get_execution(session, params["executionArn"])
        page = service.history(
            session,
            view.execution,
            limit=params.get("maxResults"),
            token=params.get("nextToken"),
            reverse=bool(params.get("reverseOrder")),
            include_data=params.get("includeExecutionData", True) is not False,
        )
        out: dict[str, Any] = {"events": page.items}
        if page.next_token:
            out["nextToken"] = page.next_token
        return out

    return _unit(call, work)


# --- callbacks ------------------------------------------------------------------------------


@_op("SendTaskSuccess", write=True)
def send_task_success(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    callbacks.send_success(call.require_settings(), params["taskToken"], params["output"])
    return {}


@_op("SendTaskFailure", write=True)
def send_task_failure(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    callbacks.send_failure(
        call.require_settings(), params["taskToken"], params.get("error"), params.get("cause")
    )
    return {}


@_op("SendTaskHeartbeat", write=True)
def send_task_heartbeat(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    callbacks.send_heartbeat(call.require_settings(), params["taskToken"])
    return {}
