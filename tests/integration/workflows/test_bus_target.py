"""The bus's state machine target: an event routed to a state machine starts one execution,
named after the delivery, even when the delivery is attempted again (a worker that died after
starting it, a sweeper duplicate) — before or after that execution finished."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import update

from app.bus import service as bus
from app.bus import targets
from app.bus.arns import Scope
from app.bus.delivery import deliver
from app.bus.events import put_events
from app.bus.models import Delivery
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


def express_target(wf: Stack, unique: str, definition: dict[str, Any]) -> str:
    """Route ``test.<unique>`` events to a new Express machine; the delivery id of one event."""
    machine = wf.create(unique, definition, "EXPRESS")
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        bus.put_rule(session, name=unique, event_pattern={"source": [f"test.{unique}"]})
        assert bus.put_targets(session, None, unique, [{"Id": "sfn", "Arn": machine}]) == []
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
        "TimeoutSeconds": 10,
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


def test_a_failed_inline_express_run_still_delivers(
    wf: Stack, unique: str, with_target: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_hop(monkeypatch)
    definition = {
        "StartAt": "Boom",
        "TimeoutSeconds": 10,
        "States": {"Boom": {"Type": "Fail", "Error": "Overheated", "Cause": "too hot"}},
    }
    delivery_id = express_target(wf, unique, definition)
    assert deliver(wf.settings, delivery_id) == "succeeded"
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        assert delivery.status == "succeeded"


def test_an_unbounded_express_target_goes_to_a_worker(
    wf: Stack, unique: str, with_target: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(dispatch, "send_express", lambda settings, payload: sent.append(payload))
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    delivery_id = express_target(wf, unique, definition)
    assert deliver(wf.settings, delivery_id) == "succeeded"
    assert len(sent) == 1  # no TimeoutSeconds: could outlive the delivery claim
