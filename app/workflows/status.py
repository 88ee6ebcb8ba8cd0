"""``Step Functions Execution Status Change`` events on our bus, written in the step's
transaction (so a rule sees every status exactly once) and delivered after commit.

The detail is AWS's: ``executionArn``, ``stateMachineArn``, ``name``, ``status``, ``startDate``
and ``stopDate`` (epoch milliseconds), ``input``/``output`` as JSON text with
``inputDetails``/``outputDetails``, and ``error``/``cause`` once failed. Only the source differs:
``smokehouse.states`` (``aws.*`` belongs to AWS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from app.bus.arns import Scope
from app.bus.events import put_events
from app.workflows.asl import ExecutionState

SOURCE: Final = "smokehouse.states"
DETAIL_TYPE: Final = "Step Functions Execution Status Change"
#: Input and output are left out (``included: false``) beyond this, as AWS does past 248 KiB,
#: so the event stays under PutEvents' 256 KiB.
MAX_DATA_BYTES: Final = 240 * 1024


@dataclass(frozen=True, slots=True)
class StatusChange:
    execution_arn: str
    state_machine_arn: str
    name: str
    status: str
    start_date: datetime
    stop_date: datetime | None
    input: str | None
    output: str | None = None
    error: str | None = None
    cause: str | None = None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def from_state(state: ExecutionState, start: datetime, stop: datetime | None) -> StatusChange:
    """The change an execution's (new) state represents."""
    info = state.execution
    return StatusChange(
        execution_arn=info.id,
        state_machine_arn=info.state_machine_id,
        name=info.name,
        status=state.status,
        start_date=start,
        stop_date=stop,
        input=_json(info.input),
        output=_json(state.output) if state.status == "SUCCEEDED" else None,
        error=state.error,
        cause=state.cause,
    )


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def detail(change: StatusChange) -> dict[str, Any]:
    size = len((change.input or "").encode()) + len((change.output or "").encode())
    included = size <= MAX_DATA_BYTES
    return {
        "executionArn": change.execution_arn,
        "stateMachineArn": change.state_machine_arn,
        "name": change.name,
        "status": change.status,
        "startDate": _millis(change.start_date),
        "stopDate": _millis(change.stop_date),
        "input": change.input if included else None,
        "output": change.output if included else None,
        "inputDetails": {"included": included},
        "outputDetails": {"included": included} if change.output is not None else None,
        "error": change.error,
        "cause": change.cause,
    }


def publish(
    session: Session, region: str, account_id: str, change: StatusChange, now: datetime
) -> list[str]:
    """Put the event; return the delivery ids to enqueue after commit."""
    entry = {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(detail(change), separators=(",", ":")),
        "Resources": [change.execution_arn],
    }
    return put_events(session, [entry], Scope(region, account_id), now=now).delivery_ids
