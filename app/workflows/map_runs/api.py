"""``AWSStepFunctions.*`` for Map Runs: DescribeMapRun, ListMapRuns, UpdateMapRun.

``UpdateMapRun`` is one durable step of the parent execution
(:func:`~app.workflows.engine.apply` with a :class:`~app.workflows.asl.MapRunUpdated` event):
the interpreter starts more children at once when ``maxConcurrency`` rises and fails the run
with ``States.ExceedToleratedFailureThreshold`` when a lowered threshold is already exceeded;
the step's transaction rewrites the ``map_runs`` row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from sqlalchemy.orm import Session

from app.aws.operations import AwsCall, Handler, registry
from app.db import utcnow
from app.workflows import service as workflows_service
from app.workflows.map_runs import service

PREFIX: Final = "AWSStepFunctions"
T = TypeVar("T")


def _op(name: str, *, write: bool) -> Callable[[Handler], Handler]:
    return registry.operation(PREFIX, name, write=write)


def _unit(call: AwsCall, work: Callable[[Session], T]) -> T:
    return workflows_service.unit_of_work(call.require_settings(), work)


@_op("DescribeMapRun", write=False)
def describe_map_run(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    return _unit(call, lambda session: service.describe(session, params.get("mapRunArn")))


@_op("ListMapRuns", write=False)
def list_map_runs(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    return _unit(
        call,
        lambda session: service.list_for_execution(
            session, params.get("executionArn"), params.get("maxResults"), params.get("nextToken")
        ),
    )


@_op("UpdateMapRun", write=True)
def update_map_run(params: dict[str, Any], call: AwsCall) -> dict[str, Any]:
    from app.workflows import engine

    settings = call.require_settings()
    execution_id, event = _unit(call, lambda session: service.update_event(session, params))
    now = utcnow()
    engine.apply(settings, execution_id, lambda _session, _loaded: ([(event, now)], []))
    return {}
