"""Task resources by ARN. Add a kind by writing a module and listing it in :data:`RESOURCES`.

``check_definition`` is the create-time half: a definition naming a resource smokehouse cannot
run is refused with ``InvalidDefinition`` instead of failing every execution later.
"""

from __future__ import annotations

from collections.abc import Iterator

from app.workflows.asl import CompiledMachine, Diagnostic
from app.workflows.resources import aws_sdk
from app.workflows.resources.aws_sdk import AwsSdkResource
from app.workflows.resources.base import TOKEN_SUFFIX, Resource, TaskCall, require_json
from app.workflows.resources.events import EventsResource
from app.workflows.resources.handler import HandlerResource
from app.workflows.resources.http import HttpResource
from app.workflows.resources.lambda_invoke import LambdaResource

RESOURCES: list[Resource] = [
    HandlerResource(),
    LambdaResource(),
    AwsSdkResource(),
    EventsResource(),
    HttpResource(),
]
SUPPORTED = (
    "arn:aws:states:::smokehouse:task:<handler>, arn:smokehouse:handler:<handler>, "
    "arn:aws:states:::lambda:invoke, arn:aws:lambda:<region>:<account>:function:<handler>, "
    "arn:aws:states:::aws-sdk:<service>:<action>, arn:aws:states:::events:putEvents, "
    "arn:aws:states:::http:invoke"
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


def check_definition(
    machine: CompiledMachine, machine_type: str, aws_sdk_allow: str | None = ""
) -> list[Diagnostic]:
    """ERROR diagnostics for resources we cannot run (or that an Express machine may not use),
    and for aws-sdk actions the policy refuses (the defaults plus ``aws_sdk_allow``,
    ``SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW``; None skips that check, for a caller that checks again
    with the settings)."""
    found: list[Diagnostic] = []
    for location, resource in _task_states(machine):
        if resource.endswith(".sync") or ".sync:" in resource:
            found.append(
                Diagnostic(
                    "ERROR",
                    "SCHEMA_VALIDATION_FAILED",
                    "The '.sync' service integration pattern is not supported by smokehouse",
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
    "TaskCall",
    "check_definition",
    "register_resource",
    "require_json",
    "resource_for",
]
