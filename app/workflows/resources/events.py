"""``arn:aws:states:::events:putEvents``: put events on our own bus (EventBridge's optimised
integration).

As on AWS, the execution's and the state machine's ARNs are appended to every entry's
``Resources``, ``Detail`` may be a JSON object, and a response with ``FailedEntryCount`` > 0
fails the task with ``EventBridge.FailedEntry``. This resource is *transactional*: the events
are written in the same transaction that records the task's result, so a crashed worker neither
loses them nor puts them twice.
"""

from __future__ import annotations

import json
from typing import Any

from app.bus.arns import Scope
from app.bus.errors import BusError
from app.bus.events import put_events
from app.workflows.asl import TaskError
from app.workflows.resources.base import TaskCall

RESOURCE = "arn:aws:states:::events:putEvents"


def _entry(raw: Any, resources: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TaskError("States.Runtime", "each entry of Entries must be an object")
    entry = dict(raw)
    if "Detail" in entry and not isinstance(entry["Detail"], str):
        entry["Detail"] = json.dumps(entry["Detail"], separators=(",", ":"))
    entry["Resources"] = [*(entry.get("Resources") or []), *resources]
    return entry


class EventsResource:
    kind = "events"
    transactional = True

    def accepts(self, base: str) -> bool:
        return base == RESOURCE

    def problem(self, base: str) -> str | None:
        return None

    def run(self, call: TaskCall) -> Any:
        assert call.session is not None, "putEvents runs inside the step's transaction"
        params = call.parameters if isinstance(call.parameters, dict) else {}
        raw_entries = params.get("Entries")
        if not isinstance(raw_entries, list):
            raise TaskError("States.Runtime", "putEvents needs an Entries array")
        entries = [_entry(e, [call.execution_arn, call.state_machine_arn]) for e in raw_entries]
        scope = Scope(call.settings.region, call.settings.account_id)
        try:
            # The deliveries go out when the step's transaction commits.
            result = put_events(call.session, entries, scope, settings=call.settings)
        except BusError as exc:
            raise TaskError(f"EventBridge.{exc.code}", exc.message) from None
        response = result.response()
        if result.failed_count:
            raise TaskError("EventBridge.FailedEntry", json.dumps(response))
        return response
