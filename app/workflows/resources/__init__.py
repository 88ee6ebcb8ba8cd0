"""Task resources by ARN. Add a kind by writing a module and listing it in :data:`RESOURCES`.

``check_definition`` is the create-time half: a definition naming a resource smokehouse cannot
run is refused with ``InvalidDefinition`` instead of failing every execution later.
"""

from __future__ import annotations

from collections.abc import Iterator

from app.workflows.asl import CompiledMachine, Diagnostic
from app.workflows.asl import distributed as dist
from app.workflows.asl.interpreter import is_activity
from app.workflows.resources import aws_sdk
from app.workflows.resources.aws_sdk import AwsSdkResource
from app.workflows.resources.base import TOKEN_SUFFIX, Resource, TaskCall, require_json
from app.workflows.resources.events import EventsResource
from app.workflows.resources.handler import HandlerResource
from app.workflows.resources.http import HttpResource
from app.workflows.resources.item_reader import ItemReaderResource
from app.workflows.resources.lambda_invoke import LambdaResource
from app.workflows.resources.map_run_child import MapRunChildResource
from app.workflows.resources.result_writer import ResultWriterResource
from app.workflows.resources.start_execution import StartExecutionResource, Submitted, wait_of

RESOURCES: list[Resource] = [
    HandlerResource(),
    LambdaResource(),
    AwsSdkResource(),
    EventsResource(),
    HttpResource(),
    StartExecutionResource(),
    # a distributed Map's own tasks (never a Task state's Resource: see _distributed_maps)
    ItemReaderResource(),
    MapRunChildResource(),
    ResultWriterResource(),
]
SUPPORTED = (
    "arn:aws:states:::smokehouse:task:<handler>, arn:smokehouse:handler:<handler>, "
    "arn:aws:states:::lambda:invoke, arn:aws:lambda:<region>:<account>:function:<handler>, "
    "arn:aws:states:::aws-sdk:<service>:<action>, arn:aws:states:::events:putEvents, "
    "arn:aws:states:::http:invoke, arn:aws:states:::states:startExecution[.sync|.sync:2]"
)


def register_resource(resource: Resource, supported: str) -> None:
    """Add a resource kind from a domain workflows must not know (SQS's ``sqs:sendMessage``,
    from :mod:`app.wiring`); once per class. ``supported`` is how error messages name it."""
    global SUPPORTED
    if not any(type(known) is type(resource) for known in RESOURCES):
        RESOURCES.append(resource)
        SUPPORTED = f"{SUPPORTED}, {supported}"


def resource_for(resource: str) -> Resource | None:
    base = resource.removesuffix(TOKEN_SUFFIX)
    return next((r for r in RESOURCES if r.accepts(base)), None)


def _task_states(machine: CompiledMachine) -> Iterator[tuple[str, str]]:
    for key, workflow in machine.workflows.items():
        for name, state in workflow.states.items():
            if state.type == "Task":
                yield f"{key}/States/{name}/Resource", state.resource


def _distributed_maps(machine: CompiledMachine) -> Iterator[tuple[str, str | None, str | None]]:
    """``(location, ItemReader resource, ResultWriter resource)`` of each distributed Map."""
    for key, workflow in machine.workflows.items():
        for name, state in workflow.states.items():
            if state.dist is not None:
                spec = state.dist
                yield f"{key}/States/{name}", spec.reader_resource, spec.writer_resource


def _express_processors(machine: CompiledMachine) -> list[str]:
    """The workflow keys of the ItemProcessors whose Map Run children are Express executions."""
    return [
        f"{key}/States/{name}/ItemProcessor"
        for key, workflow in machine.workflows.items()
        for name, state in workflow.states.items()
        if state.dist is not None and state.dist.execution_type == "EXPRESS"
    ]


def _distributed_problems(
    machine: CompiledMachine, machine_type: str, aws_sdk_allow: str | None
) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for location, reader, writer in _distributed_maps(machine):
        if machine_type == "EXPRESS":
            found.append(
                Diagnostic(
                    "ERROR",
                    "SCHEMA_VALIDATION_FAILED",
                    "Express state machine does not support a Map state in DISTRIBUTED mode",
                    location,
                )
            )
            continue
        if aws_sdk_allow is None:
            continue
        for field, resource in (("ItemReader", reader), ("ResultWriter", writer)):
            if resource is None:
                continue
            action = resource.rsplit(":", 1)[-1]
            refused = aws_sdk.refusal(f"{aws_sdk.PREFIX}s3:{action}", aws_sdk_allow)
            if refused is not None:
                found.append(
                    Diagnostic(
                        "ERROR",
                        "SCHEMA_VALIDATION_FAILED",
                        f"The {field} calls the AWS action s3:{action}, which smokehouse does "
                        f"not allow (it is denied by default); allow it with "
                        f"{aws_sdk.ALLOW_SETTING}=s3:{action}",
                        f"{location}/{field}/Resource",
                    )
                )
    return found


def check_definition(
    machine: CompiledMachine, machine_type: str, aws_sdk_allow: str | None = ""
) -> list[Diagnostic]:
    """ERROR diagnostics for resources we cannot run (or that an Express machine may not use),
    and for aws-sdk actions the policy refuses (the defaults plus ``aws_sdk_allow``,
    ``SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW``; None skips that check, for a caller that checks again
    with the settings)."""
    found = _distributed_problems(machine, machine_type, aws_sdk_allow)
    express_processors = _express_processors(machine)
    top_type = machine_type
    for location, resource in _task_states(machine):
        # a Task inside an EXPRESS distributed Map's ItemProcessor runs in an Express child
        inside = any(location.startswith(f"{key}/") for key in express_processors)
        machine_type = "EXPRESS" if inside else top_type
        if resource.removesuffix(TOKEN_SUFFIX) in dist.INTERNAL_RESOURCES:
            found.append(
                Diagnostic(
                    "ERROR",
                    "SCHEMA_VALIDATION_FAILED",
                    f"The resource '{resource}' is not supported; use one of: {SUPPORTED}",
                    location,
                )
            )
            continue
        sync = ".sync" in resource.removesuffix(TOKEN_SUFFIX)
        if sync and (wait_of(resource) is None or machine_type == "EXPRESS"):
            message = (
                "Express state machine does not support '.sync' service integration"
                if wait_of(resource) is not None
                else "The '.sync' service integration pattern is only supported by smokehouse "
                "for arn:aws:states:::states:startExecution"
            )
            found.append(Diagnostic("ERROR", "SCHEMA_VALIDATION_FAILED", message, location))
            continue
        if machine_type == "EXPRESS" and is_activity(resource):
            found.append(
                Diagnostic(
                    "ERROR",
                    "SCHEMA_VALIDATION_FAILED",
                    "Express state machine does not support activities",
                    location,
                )
            )
            continue
        if machine_type == "EXPRESS" and resource.endswith(TOKEN_SUFFIX):
            found.append(
                Diagnostic(
                    "ERROR",
                    "SCHEMA_VALIDATION_FAILED",
                    "Express state machine does not support '.waitForTaskToken' service "
                    "integration",
                    location,
                )
            )
            continue
        kind = resource_for(resource)
        problem = (
            f"The resource '{resource}' is not supported; use one of: {SUPPORTED}"
            if kind is None
            else kind.problem(resource.removesuffix(TOKEN_SUFFIX))
        )
        if problem is None and isinstance(kind, AwsSdkResource) and aws_sdk_allow is not None:
            problem = aws_sdk.refusal(resource.removesuffix(TOKEN_SUFFIX), aws_sdk_allow)
        if problem is not None:
            found.append(Diagnostic("ERROR", "SCHEMA_VALIDATION_FAILED", problem, location))
    return found


__all__ = [
    "RESOURCES",
    "TOKEN_SUFFIX",
    "Resource",
    "Submitted",
    "TaskCall",
    "check_definition",
    "register_resource",
    "require_json",
    "resource_for",
]
