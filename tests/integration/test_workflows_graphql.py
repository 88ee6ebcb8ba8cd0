"""Workflows over GraphQL, on SQLite and PostgreSQL: queries show what the services stored (the
shipped hello-world machine, registered at start-up), only admin keys start or stop, and the
polling subscriptions deliver what another writer commits — and count themselves out when a
client goes away abruptly."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from starlette.testclient import WebSocketTestSession

from app.config import Settings
from app.db import get_database, utcnow
from app.graphql.subscriptions import active_subscriptions
from app.scaling.models import ScalingDecision
from app.workflows import callbacks, service
from app.workflows.models import Execution
from tests.integration.graphql_client import data, gql
from tests.keys import VIEWER_SECRET, token

pytestmark = pytest.mark.integration

HELLO = "hello-world"


def start(settings: Settings, input_text: str = '{"name": "pit"}') -> str:
    """Start hello-world through the service, as a worker-less StartExecution would."""
    with get_database(settings.sqlalchemy_url).session() as session:
        machine = service.get_machine(session, service.scope(settings).state_machine(HELLO))
        started = service.start_execution(
            session, settings, machine, name=None, input_text=input_text, now=utcnow()
        )
    return started.arn


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def subscribe(ws: WebSocketTestSession, query: str, **variables: Any) -> None:
    ws.send_json({"type": "connection_init", "payload": {"x-api-key": token(VIEWER_SECRET)}})
    assert ws.receive_json()["type"] == "connection_ack"
    before = active_subscriptions()
    ws.send_json(
        {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
    )
    wait_for(lambda: active_subscriptions() == before + 1)  # the cursor is set: go


def next_data(ws: WebSocketTestSession) -> Any:
    message = ws.receive_json()
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message["payload"]
    return message["payload"]["data"]


EXECUTION = """arn name stateMachine stateMachineArn status input output error cause
               startDate stopDate"""


def test_queries_return_what_the_services_stored(settings: Settings, client: TestClient) -> None:
    arn = start(settings)
    machines = data(
        client,
        """{ stateMachines { name arn type status executionCount definition
               graph { nodes { id type label end parent } edges { from to kind } } } }""",
    )["stateMachines"]
    [hello] = [m for m in machines if m["name"] == HELLO]
    assert hello["arn"] == service.scope(settings).state_machine(HELLO)
    assert (hello["type"], hello["status"], hello["executionCount"]) == ("STANDARD", "ACTIVE", 1)
    assert hello["definition"]["StartAt"] == "Greet"
    assert [n["id"] for n in hello["graph"]["nodes"]] == [
        "~start",
        "~end",
        "Greet",
        "Pause",
        "Done",
    ]
    assert hello["graph"]["edges"][-1] == {"from": "Done", "to": "~end", "kind": "end"}

    one = data(client, "query($n: String!) { stateMachine(name: $n) { arn } }", n=hello["arn"])
    assert one["stateMachine"] == {"arn": hello["arn"]}
    assert data(client, '{ stateMachine(name: "nope") { arn } }')["stateMachine"] is None

    query = f"""query($m: String, $s: String) {{ executions(stateMachine: $m, status: $s) {{
        {EXECUTION}
        history(limit: 2) {{ id previousEventId type details }}
        last: history(limit: 1, reverse: true) {{ id type }} }} }}"""
    [execution] = data(client, query, m=HELLO, s="RUNNING")["executions"]
    assert execution["arn"] == arn
    assert execution["stateMachine"] == HELLO
    assert execution["status"] == "RUNNING"
    assert execution["input"] == {"name": "pit"}
    assert execution["output"] is None
    assert execution["stopDate"] is None
    first, second = execution["history"]
    assert (first["id"], first["previousEventId"], first["type"]) == (1, 0, "ExecutionStarted")
    assert first["details"]["executionStartedEventDetails"]["input"] == '{"name":"pit"}'
    assert (second["id"], second["type"]) == (2, "PassStateEntered")
    assert execution["last"] == [{"id": execution["last"][0]["id"], "type": "WaitStateEntered"}]
    assert data(client, query, m=HELLO, s="SUCCEEDED")["executions"] == []

    found = data(client, "query($a: String!) { execution(arn: $a) { arn } }", a=arn)
    assert found["execution"] == {"arn": arn}
    missing = data(client, '{ execution(arn: "arn:aws:states:x") { arn } }')
    assert missing["execution"] is None
    bad = gql(client, '{ executions(status: "DONE") { arn } }')
    assert "status must be one of" in bad["errors"][0]["message"]


def test_a_child_execution_names_its_parent(settings: Settings, client: TestClient) -> None:
    """``parentExecutionArn`` is the execution whose startExecution task started this one
    (the link is made by that task, tests/integration/workflows/test_nested.py; here it is
    set directly, to test the field and its batched lookup)."""
    parent, child, other = start(settings), start(settings), start(settings)
    with get_database(settings.sqlalchemy_url).session() as session:
        parent_id = session.scalar(select(Execution.id).where(Execution.arn == parent))
        session.execute(update(Execution).where(Execution.arn == child).values(parent_id=parent_id))
    found = data(client, "{ executions(limit: 10) { arn parentExecutionArn } }")["executions"]
    links = {e["arn"]: e["parentExecutionArn"] for e in found}
    assert links[child] == parent
    assert links[parent] is None
    assert links[other] is None


def test_history_of_many_executions_is_batched(settings: Settings, client: TestClient) -> None:
    arns = {start(settings) for _ in range(3)}
    executions = data(client, "{ executions { arn history(limit: 1) { type } } }")["executions"]
    assert {e["arn"] for e in executions} == arns
    assert all(e["history"] == [{"type": "ExecutionStarted"}] for e in executions)


def test_viewer_cannot_mutate_admin_starts_and_stops(client: TestClient) -> None:
    mutation = """mutation($i: JSON) { startExecution(stateMachine: "hello-world", input: $i,
                  name: "graphql-run") { arn name status input history { type } } }"""
    denied = gql(client, mutation, key=VIEWER_SECRET, i={"name": "v"})
    assert denied["errors"][0]["message"] == "This API key is read-only (role viewer)"
    assert data(client, "{ executions { arn } }")["executions"] == []

    started = data(client, mutation, i={"name": "pit"})["startExecution"]
    assert started["name"] == "graphql-run"
    assert started["status"] == "RUNNING"
    assert started["input"] == {"name": "pit"}
    assert started["history"][0] == {"type": "ExecutionStarted"}
    again = data(client, mutation, i={"name": "pit"})["startExecution"]  # AWS: idempotent
    assert again["arn"] == started["arn"]

    stop = """mutation($a: String!) { stopExecution(arn: $a, error: "E", cause: "why") {
              status error cause stopDate history(reverse: true, limit: 1) { type } } }"""
    assert "errors" in gql(client, stop, key=VIEWER_SECRET, a=started["arn"])
    stopped = data(client, stop, a=started["arn"])["stopExecution"]
    assert (stopped["status"], stopped["error"], stopped["cause"]) == ("ABORTED", "E", "why")
    assert stopped["stopDate"] is not None
    assert stopped["history"] == [{"type": "ExecutionAborted"}]

    unknown = gql(client, 'mutation { startExecution(stateMachine: "nope") { arn } }')
    assert "State Machine Does Not Exist" in unknown["errors"][0]["message"]


def test_execution_updates_of_one_execution(settings: Settings, client: TestClient) -> None:
    arn = start(settings)
    query = """subscription($a: String) { executionUpdates(arn: $a) {
                 execution { arn status error } events { id type } } }"""
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        subscribe(ws, query, a=arn)
        callbacks.stop(settings, arn, "Stopped.ByTest", None)  # a step through the engine
        update = next_data(ws)["executionUpdates"]
        assert update["execution"] == {"arn": arn, "status": "ABORTED", "error": "Stopped.ByTest"}
        [event] = update["events"]
        assert event["type"] == "ExecutionAborted"
        assert ws.receive_json() == {"id": "1", "type": "complete"}  # it ended: so does the stream
    wait_for(lambda: active_subscriptions() == 0)


def test_execution_updates_of_all_then_abrupt_disconnect(
    settings: Settings, client: TestClient
) -> None:
    start(settings)  # already there: not reported
    query = "subscription { executionUpdates { execution { arn status } events { type } } }"
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        subscribe(ws, query)
        arn = start(settings)
        update = next_data(ws)["executionUpdates"]
        assert update["execution"] == {"arn": arn, "status": "RUNNING"}
        assert [e["type"] for e in update["events"]][:2] == ["ExecutionStarted", "PassStateEntered"]
        callbacks.stop(settings, arn, None, None)
        update = next_data(ws)["executionUpdates"]
        assert update["execution"] == {"arn": arn, "status": "ABORTED"}
        assert update["events"] == [{"type": "ExecutionAborted"}]
        assert active_subscriptions("executionUpdates") == 1
        # leave without "complete": the socket just closes under the subscription
    wait_for(lambda: active_subscriptions() == 0)


def test_scaling_decisions_subscription(settings: Settings, client: TestClient) -> None:
    def decide(queue: str) -> str:
        decision_id = str(uuid.uuid4())
        with get_database(settings.sqlalchemy_url).session() as session:
            session.add(
                ScalingDecision(
                    id=decision_id,
                    queue=queue,
                    decided_at=utcnow(),
                    previous=0,
                    desired=2,
                    recommendation=2,
                    queued=7,
                    reserved=0,
                    running=0,
                    live_workers=0,
                    busy_workers=0,
                    reason="queue depth 7",
                    backend="process",
                    error=None,
                )
            )
        return decision_id

    decide("workflows")  # before the subscription: not reported
    query = 'subscription { scalingDecisions(queue: "workflows") { id queue desired reason } }'
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        subscribe(ws, query)
        decide("other")
        wanted = decide("workflows")
        decision = next_data(ws)["scalingDecisions"]
        assert decision == {
            "id": wanted,
            "queue": "workflows",
            "desired": 2,
            "reason": "queue depth 7",
        }
    wait_for(lambda: active_subscriptions() == 0)
