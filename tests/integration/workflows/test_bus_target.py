"""The bus's state machine target: an event routed to a state machine starts one execution,
named after the delivery, even when the delivery is attempted again (a worker that died after
starting it, a sweeper duplicate) — before or after that execution finished."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from app.bus import service as bus
from app.bus import targets
from app.bus.arns import Scope
from app.bus.delivery import deliver
from app.bus.events import put_events
from app.bus.models import DeadLetter, Delivery
from app.db import get_database, utcnow
from app.handlers import HandlerContext, handler
from app.workflows import dispatch
from app.workflows.bus_target import StateMachineTarget, execution_name
from tests.integration.workflows.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEFINITION = {
    "StartAt": "Echo",
    "States": {
        "Echo": {
            "Type": "Task",
            "Resource": "arn:aws:states:::smokehouse:task:echo",
            "InputPath": "$.detail",
            "End": True,
        }
    },
}


@pytest.fixture
def with_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the adapter in this process, as :mod:`app.wiring` does in every entry point."""
    if not any(isinstance(a, StateMachineTarget) for a in targets.ADAPTERS):
        monkeypatch.setattr(targets, "ADAPTERS", [*targets.ADAPTERS, StateMachineTarget()])


def retry(wf: Stack, delivery_id: str) -> str:
    """Make the delivery due again, as if its attempt had died after starting the execution."""
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status="pending", claimed_until=None, next_attempt_at=utcnow())
        )
    return deliver(wf.settings, delivery_id)


def test_a_retried_delivery_starts_the_execution_once(
    wf: Stack, unique: str, with_target: None
) -> None:
    machine = wf.create(unique, DEFINITION)
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        bus.put_rule(session, name=unique, event_pattern={"source": [f"test.{unique}"]})
        assert bus.put_targets(session, None, unique, [{"Id": "sfn", "Arn": machine}]) == []
        put = put_events(
            session,
            [{"Source": f"test.{unique}", "DetailType": "Order", "Detail": '{"order": 5}'}],
            Scope(wf.settings.region, wf.settings.account_id),
        )
    [delivery_id] = put.delivery_ids
    assert deliver(wf.settings, delivery_id) == "succeeded"
    assert retry(wf, delivery_id) == "succeeded"  # while the execution may still run

    sfn = wf.client()
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions] == [execution_name(delivery_id)]
    described = wf.wait(executions[0]["executionArn"])
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"order": 5}
    assert json.loads(described["input"])["source"] == f"test.{unique}"

    assert retry(wf, delivery_id) == "succeeded"  # after it finished: ExecutionAlreadyExists
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 1


def test_a_missing_state_machine_dead_letters(wf: Stack, unique: str, with_target: None) -> None:
    arn = f"arn:aws:states:us-east-1:000000000000:stateMachine:{unique}-gone"
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        bus.put_rule(session, name=unique, event_pattern={"source": [f"test.{unique}"]})
        assert bus.put_targets(session, None, unique, [{"Id": "sfn", "Arn": arn}]) == []
        put = put_events(
            session,
            [{"Source": f"test.{unique}", "DetailType": "Order", "Detail": "{}"}],
            Scope(wf.settings.region, wf.settings.account_id),
        )
    assert deliver(wf.settings, put.delivery_ids[0]) == "failed"


INLINE_SEEN: list[Any] = []


@handler("wf-inline-probe")
def inline_probe(payload: Any, context: HandlerContext) -> Any:
    INLINE_SEEN.append(payload)
    return payload


def express_target(
    wf: Stack, unique: str, definition: dict[str, Any], retries: int | None = None
) -> str:
    """Route ``test.<unique>`` events to a new Express machine; the delivery id of one event."""
    machine = wf.create(unique, definition, "EXPRESS")
    target: dict[str, Any] = {"Id": "sfn", "Arn": machine}
    if retries is not None:
        target["RetryPolicy"] = {"MaximumRetryAttempts": retries}
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        bus.put_rule(session, name=unique, event_pattern={"source": [f"test.{unique}"]})
        assert bus.put_targets(session, None, unique, [target]) == []
        put = put_events(
            session,
            [{"Source": f"test.{unique}", "DetailType": "Reading", "Detail": '{"t": 21}'}],
            Scope(wf.settings.region, wf.settings.account_id),
        )
    [delivery_id] = put.delivery_ids
    return delivery_id


def no_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(settings: Any, payload: Any) -> None:
        raise AssertionError("sent a workflows.run_express message")

    monkeypatch.setattr(dispatch, "send_express", refuse)


def test_a_bounded_express_target_runs_inline(
    wf: Stack, unique: str, with_target: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_hop(monkeypatch)
    INLINE_SEEN.clear()
    definition = {
        "StartAt": "Probe",
        "States": {
            "Probe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::smokehouse:task:wf-inline-probe",
                "Parameters": {"t.$": "$.detail.t", "unique": unique},
                "End": True,
            }
        },
    }
    delivery_id = express_target(wf, unique, definition)
    assert deliver(wf.settings, delivery_id) == "succeeded"
    assert [{"t": 21, "unique": unique}] == INLINE_SEEN  # ran before the delivery returned


def make_due(wf: Stack, delivery_id: str) -> None:
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        session.execute(
            update(Delivery).where(Delivery.id == delivery_id).values(next_attempt_at=utcnow())
        )


@pytest.mark.parametrize(
    ("states", "code"),
    [
        ({"Boom": {"Type": "Fail", "Error": "Overheated", "Cause": "too hot"}}, "ExecutionFailed"),
        ({"Boom": {"Type": "Wait", "Seconds": 5, "End": True}}, "ExecutionTimedOut"),
    ],
)
def test_failed_express_dead_letters(
    wf: Stack,
    unique: str,
    with_target: None,
    monkeypatch: pytest.MonkeyPatch,
    states: dict[str, Any],
    code: str,
) -> None:
    """Before: the delivery succeeded and the failure was only a log line."""
    no_hop(monkeypatch)
    definition = {"StartAt": "Boom", "TimeoutSeconds": 1, "States": states}
    delivery_id = express_target(wf, unique, definition, retries=1)
    assert deliver(wf.settings, delivery_id) == "retry"
    make_due(wf, delivery_id)
    assert deliver(wf.settings, delivery_id) == "failed"
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        assert delivery.status == "dead"
        [letter] = session.scalars(select(DeadLetter).where(DeadLetter.delivery_id == delivery_id))
        assert letter.error_code == code
        assert letter.attempts == 2


def test_express_keeps_its_claim(
    wf: Stack, unique: str, with_target: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run longer than the claim is not attempted by a second worker meanwhile."""
    no_hop(monkeypatch)
    settings = wf.settings.model_copy(update={"bus_claim_seconds": 0.9})
    definition = {
        "StartAt": "Slow",
        "States": {"Slow": {"Type": "Wait", "Seconds": 3, "End": True}},
    }
    delivery_id = express_target(wf, unique, definition)
    outcome: list[str] = []
    first = threading.Thread(target=lambda: outcome.append(deliver(settings, delivery_id)))
    first.start()
    time.sleep(2.0)  # two claims' worth: without renewal it would have lapsed
    assert deliver(settings, delivery_id) == "skipped"
    first.join(10)
    assert outcome == ["succeeded"]
