"""Map Runs: their rows, DescribeMapRun / ListMapRuns / UpdateMapRun, and what the
ResultWriter exports.

The interpreter keeps each Map Run's record in the parent's ``ExecutionState.map_runs``;
:func:`sync` mirrors it into ``map_runs`` inside the step's own transaction (so a row exists
exactly when the step that started the run committed). The counts come from the children
themselves (``map_run_children`` joined with ``executions``): nothing is counted twice when a
step is repeated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import get_database
from app.workflows import errors
from app.workflows.asl import ExecutionState, MapRunUpdated
from app.workflows.asl.model import iso
from app.workflows.map_runs.models import MapRun, MapRunChild
from app.workflows.models import Execution

STATUSES: Final = ("RUNNING", "SUCCEEDED", "FAILED", "ABORTED")
_MAP_RUN_ARN_PARTS: Final = 8  # arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<id>


# --- keeping the rows in step with the interpreter ------------------------------------------------


def sync(
    session: Session,
    execution_id: int,
    before: ExecutionState | None,
    after: ExecutionState,
    now: datetime,
) -> None:
    """Write the Map Runs a step started or changed (``after.map_runs`` against
    ``before``'s); call it in the step's transaction."""
    old = before.map_runs if before is not None else {}
    for arn, record in after.map_runs.items():
        if old.get(arn) == record:
            continue
        row = session.get(MapRun, arn)
        if row is None:
            row = MapRun(
                arn=arn,
                execution_id=execution_id,
                state_machine_arn=record["machine_arn"],
                execution_type=record["execution_type"],
                status="RUNNING",
                start_date=now,
            )
            session.add(row)
        row.max_concurrency = int(record.get("max_concurrency") or 0)
        row.tolerated_failure_count = int(record.get("tolerated_count") or 0)
        row.tolerated_failure_percentage = float(record.get("tolerated_percentage") or 0.0)
        row.item_total = int(record.get("items") or 0)
        row.execution_total = int(record.get("children") or 0)
        if record.get("counts") is not None:
            row.express_counts = dict(record["counts"])
        if record["status"] != row.status:
            row.status = record["status"]
            if row.status != "RUNNING":
                row.stop_date = now


def add_child(
    session: Session, map_run_arn: str, index: int, execution_id: int, item_count: int = 1
) -> None:
    """Record that ``execution_id`` runs child ``index`` of the Map Run (once)."""
    if session.get(MapRunChild, (map_run_arn, index)) is None:
        session.add(
            MapRunChild(
                map_run_arn=map_run_arn,
                index=index,
                execution_id=execution_id,
                item_count=item_count,
            )
        )


def map_run_of(session: Session, execution_id: int) -> str | None:
    """The Map Run an execution is a child of (DescribeExecution's ``mapRunArn``)."""
    found: str | None = session.scalar(
        select(MapRunChild.map_run_arn).where(MapRunChild.execution_id == execution_id)
    )
    return found


def child_of(session: Session, map_run_arn: str, index: int) -> int | None:
    """The execution that runs child ``index``, if it was started."""
    row = session.get(MapRunChild, (map_run_arn, index))
    return None if row is None else row.execution_id


# --- the API --------------------------------------------------------------------------------------


def check_arn(arn: Any) -> str:
    """A Map Run ARN: ``arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<uuid>``."""
    if not isinstance(arn, str):
        raise errors.invalid_arn(f"Invalid Arn: '{arn}'")
    parts = arn.split(":")
    if (
        len(parts) != _MAP_RUN_ARN_PARTS
        or parts[:3] != ["arn", "aws", "states"]
        or parts[5] != "mapRun"
        or "/" not in parts[6]
        or not parts[7]
    ):
        raise errors.invalid_arn(f"Invalid Arn: '{arn}'")
    return arn


def get(session: Session, arn: Any) -> MapRun:
    row = session.get(MapRun, check_arn(arn))
    if row is None:
        raise errors.resource_not_found(arn)
    return row


def counts(session: Session, run: MapRun) -> tuple[dict[str, int], dict[str, int]]:
    """``(itemCounts, executionCounts)``: started children by status; pending = not started."""
    if run.execution_type == "EXPRESS":
        return _express_counts(run)
    rows = session.execute(
        select(Execution.status, func.count(), func.coalesce(func.sum(MapRunChild.item_count), 0))
        .join(Execution, Execution.id == MapRunChild.execution_id)
        .where(MapRunChild.map_run_arn == run.arn)
        .group_by(Execution.status)
    ).all()
    executions = dict.fromkeys(("running", "succeeded", "failed", "timedOut", "aborted"), 0)
    items = dict(executions)
    keys = {
        "RUNNING": "running",
        "SUCCEEDED": "succeeded",
        "FAILED": "failed",
        "TIMED_OUT": "timedOut",
        "ABORTED": "aborted",
    }
    for status, number, item_number in rows:
        key = keys.get(status, "running")
        executions[key] += int(number)
        items[key] += int(item_number)
    started = sum(executions.values())
    started_items = sum(items.values())

    def shape(found: dict[str, int], total: int, started_total: int) -> dict[str, int]:
        pending = max(total - started_total, 0)
        if run.status != "RUNNING":  # an ended run starts nothing more
            found["aborted"] += pending
            pending = 0
        return {
            "pending": pending,
            **found,
            "total": max(total, started_total),
            "resultsWritten": found["succeeded"] + found["failed"] + found["timedOut"]
            if run.status == "SUCCEEDED"
            else 0,
        }

    return (
        shape(items, run.item_total, started_items),
        shape(executions, run.execution_total, started),
    )


def _express_counts(run: MapRun) -> tuple[dict[str, int], dict[str, int]]:
    """An EXPRESS run's counts, as its parent counted them (its children are not stored: an
    Express execution ends in the worker that ran it, succeeded or failed)."""
    counted = run.express_counts or {}

    def shape(kind: str, total: int) -> dict[str, int]:
        started = int(counted.get(f"{kind}_started", 0))
        succeeded = int(counted.get(f"{kind}_succeeded", 0))
        failed = int(counted.get(f"{kind}_failed", 0))
        running = max(started - succeeded - failed, 0)
        pending = max(total - started, 0)
        aborted = 0
        if run.status != "RUNNING":  # an ended run starts nothing more, nor waits for any
            aborted, running, pending = running + pending, 0, 0
        return {
            "pending": pending,
            "running": running,
            "succeeded": succeeded,
            "failed": failed,
            "timedOut": 0,
            "aborted": aborted,
            "total": max(total, started),
            "resultsWritten": succeeded + failed if run.status == "SUCCEEDED" else 0,
        }

    return shape("items", run.item_total), shape("executions", run.execution_total)


def describe(session: Session, arn: Any) -> dict[str, Any]:
    """DescribeMapRun's answer."""
    run = get(session, arn)
    execution_arn = session.scalar(select(Execution.arn).where(Execution.id == run.execution_id))
    item_counts, execution_counts = counts(session, run)
    out: dict[str, Any] = {
        "mapRunArn": run.arn,
        "executionArn": execution_arn,
        "status": run.status,
        "startDate": run.start_date,
        "maxConcurrency": run.max_concurrency,
        "toleratedFailurePercentage": run.tolerated_failure_percentage,
        "toleratedFailureCount": run.tolerated_failure_count,
        "itemCounts": item_counts,
        "executionCounts": execution_counts,
        "redriveCount": 0,
    }
    if run.stop_date is not None:
        out["stopDate"] = run.stop_date
    return out


def list_for_execution(
    session: Session, execution_arn: Any, limit: Any, token: Any
) -> dict[str, Any]:
    """ListMapRuns' answer (oldest first, as AWS lists them)."""
    from app.workflows import arns
    from app.workflows.service import paginate

    arns.execution_ref(execution_arn)
    execution_id = session.scalar(select(Execution.id).where(Execution.arn == execution_arn))
    if execution_id is None:
        raise errors.execution_does_not_exist(str(execution_arn))
    page = paginate(
        session,
        select(MapRun)
        .where(MapRun.execution_id == execution_id)
        .order_by(MapRun.start_date, MapRun.arn),
        limit,
        token,
    )
    runs: list[dict[str, Any]] = []
    for (run,) in page.items:
        item: dict[str, Any] = {
            "executionArn": execution_arn,
            "mapRunArn": run.arn,
            "stateMachineArn": run.state_machine_arn,
            "startDate": run.start_date,
        }
        if run.stop_date is not None:
            item["stopDate"] = run.stop_date
        runs.append(item)
    out: dict[str, Any] = {"mapRuns": runs}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out


def update_event(session: Session, params: dict[str, Any]) -> tuple[int, MapRunUpdated]:
    """Check UpdateMapRun's parameters; ``(parent execution id, the event to apply)``."""
    run = get(session, params.get("mapRunArn"))
    concurrency = params.get("maxConcurrency")
    count = params.get("toleratedFailureCount")
    percentage = params.get("toleratedFailurePercentage")
    if concurrency is None and count is None and percentage is None:
        raise errors.validation(
            "At least one of the parameters maxConcurrency, toleratedFailurePercentage or "
            "toleratedFailureCount must be specified"
        )
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 0):
        raise errors.validation(
            f"1 validation error detected: Value '{concurrency}' at 'maxConcurrency' failed to "
            "satisfy constraint: Member must have value greater than or equal to 0"
        )
    if count is not None and (not isinstance(count, int) or count < 0):
        raise errors.validation(
            f"1 validation error detected: Value '{count}' at 'toleratedFailureCount' failed to "
            "satisfy constraint: Member must have value greater than or equal to 0"
        )
    if percentage is not None and (
        not isinstance(percentage, (int, float)) or not 0 <= percentage <= 100
    ):
        raise errors.validation(
            f"1 validation error detected: Value '{percentage}' at "
            "'toleratedFailurePercentage' failed to satisfy constraint: Member must have value "
            "less than or equal to 100"
        )
    if run.status != "RUNNING":
        raise errors.validation(f"Map Run {run.arn} is not running: it is {run.status}")
    event = MapRunUpdated(
        run.arn,
        max_concurrency=concurrency,
        tolerated_failure_count=count,
        tolerated_failure_percentage=None if percentage is None else float(percentage),
    )
    return run.execution_id, event


# --- for the ResultWriter -------------------------------------------------------------------------


def describe_child(execution: Execution, machine_arn: str, map_run_arn: str) -> dict[str, Any]:
    """A child execution as the ResultWriter exports it (DescribeExecution in PascalCase,
    ``Input``/``Output`` as JSON text)."""
    out: dict[str, Any] = {
        "ExecutionArn": execution.arn,
        "Input": execution.input,
        "InputDetails": {"Included": True},
        "MapRunArn": map_run_arn,
        "Name": execution.name,
        "RedriveCount": 0,
        "RedriveStatus": "NOT_REDRIVABLE",
        "StartDate": iso(execution.start_date),
        "StateMachineArn": machine_arn,
        "Status": execution.status,
    }
    if execution.status == "SUCCEEDED":
        out["RedriveStatusReason"] = "Execution is SUCCEEDED and cannot be redriven"
    if execution.stop_date is not None:
        out["StopDate"] = iso(execution.stop_date)
    if execution.output is not None:
        out["Output"] = execution.output
        out["OutputDetails"] = {"Included": True}
    if execution.error is not None:
        out["Error"] = execution.error
    if execution.cause is not None:
        out["Cause"] = execution.cause
    return dict(sorted(out.items()))


def child_results(settings: Settings, map_run_arn: str) -> list[dict[str, Any]]:
    """Every child of the Map Run, in item order, for the ResultWriter."""
    with get_database(settings.sqlalchemy_url).session() as session:
        return children_in(session, map_run_arn)


def children_in(session: Session, map_run_arn: str) -> list[dict[str, Any]]:
    run = session.get(MapRun, map_run_arn)
    if run is None:
        return []
    rows = session.scalars(
        select(Execution)
        .join(MapRunChild, MapRunChild.execution_id == Execution.id)
        .where(MapRunChild.map_run_arn == map_run_arn)
        .order_by(MapRunChild.index)
    ).all()
    return [describe_child(row, run.state_machine_arn, map_run_arn) for row in rows]
