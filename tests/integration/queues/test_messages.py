"""Work-queue messages on SQLite and PostgreSQL: sync results and failures are stored, a
redelivered finished message does not run again, an async message waits for SendTaskSuccess /
SendTaskFailure with its token, a state machine message starts one execution; the HTTP and
GraphQL producers check keys and input; a real worker runs a sync message end to end."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tests.integration.scaling.handlers  # noqa: F401  (registers the test handlers)
from app.aws.errors import AwsError
from app.aws.operations import AwsCall
from app.config import Settings
from app.db import get_database, utcnow
from app.migrate import upgrade
from app.queues import messages
from app.queues.models import QueueMessage
from app.workflows import api as workflows_api
from app.workflows import callbacks
from app.workflows.models import Execution
from tests.integration.graphql_client import gql
from tests.integration.scaling.workers import start_worker, stop
from tests.keys import ADMIN, ADMIN_SECRET, VIEWER_SECRET, auth
from tests.services import free_port, wait_for

pytestmark = pytest.mark.integration


def store(settings: Settings, queue: str = "default", **fields: Any) -> str:
    """A committed message, as a producer leaves it before the broker delivers it."""
    with get_database(settings.sqlalchemy_url).session() as session:
        return messages.send_message(session, settings, queue, **fields).id


def load(settings: Settings, message_id: str) -> QueueMessage:
    with get_database(settings.sqlalchemy_url).session() as session:
        row = session.get(QueueMessage, message_id)
        assert row is not None
        session.expunge(row)
        return row


def test_sync_result_is_stored_and_redelivery_is_a_no_op(
    settings: Settings, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    message_id = store(
        settings, handler="scaling-test-double", payload={"n": 21, "path": str(runs)}
    )
    assert load(settings, message_id).status == "queued"

    assert messages.run(settings, message_id) == {"n": 42}
    assert messages.run(settings, message_id) is None  # redelivered: finished, not run again

    row = load(settings, message_id)
    assert (row.status, row.result, row.attempts, row.error) == ("succeeded", {"n": 42}, 1, None)
    assert row.started_at is not None
    assert row.finished_at is not None
    assert runs.read_text().split() == [message_id]


def test_failure_is_stored(settings: Settings) -> None:
    message_id = store(settings, handler="scaling-test-fail", payload={"x": 1})
    messages.run(settings, message_id)
    row = load(settings, message_id)
    assert (row.status, row.error, row.cause, row.result) == (
        "failed",
        "RuntimeError",
        "boom {'x': 1}",
        None,
    )


def test_async_waits_for_the_task_token(settings: Settings, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    message_id = store(
        settings, handler="scaling-test-async", mode="async", payload={"path": str(token_file)}
    )
    assert messages.run(settings, message_id) is None
    token = token_file.read_text()
    row = load(settings, message_id)
    assert (row.status, row.task_token) == ("waiting", token)

    callbacks.send_heartbeat(settings, token)  # accepted while waiting
    workflows_api.send_task_success(
        {"taskToken": token, "output": json.dumps({"done": True})},
        AwsCall(ADMIN, settings.region, settings.account_id, "test", "SendTaskSuccess", settings),
    )
    row = load(settings, message_id)
    assert (row.status, row.result) == ("succeeded", {"done": True})

    with pytest.raises(AwsError) as again:  # the token is spent, as for a workflow task
        callbacks.send_success(settings, token, "{}")
    assert again.value.code == "TaskTimedOut"
    messages.run(settings, message_id)  # redelivery of a finished async message: no-op
    assert load(settings, message_id).status == "succeeded"


def test_async_failure_and_unknown_token(settings: Settings, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    message_id = store(
        settings, handler="scaling-test-async", mode="async", payload={"path": str(token_file)}
    )
    messages.run(settings, message_id)
    callbacks.send_failure(settings, token_file.read_text(), "Overheat", "pit at 400 C")
    row = load(settings, message_id)
    assert (row.status, row.error, row.cause) == ("failed", "Overheat", "pit at 400 C")

    with pytest.raises(AwsError) as unknown:
        callbacks.send_success(settings, str(uuid.uuid4()), "{}")
    assert unknown.value.code == "TaskDoesNotExist"


def test_state_machine_message_starts_one_execution(settings: Settings, client: TestClient) -> None:
    message_id = store(settings, state_machine="hello-world", payload={"name": "pit"})
    first = messages.run(settings, message_id)
    with get_database(settings.sqlalchemy_url).session() as session:  # a worker died: redelivery
        row = session.get(QueueMessage, message_id)
        assert row is not None
        row.status = "running"
    second = messages.run(settings, message_id)
    assert first is not None
    assert first == second
    row = load(settings, message_id)
    assert (row.status, row.execution_arn) == ("succeeded", first["executionArn"])
    assert row.execution_arn is not None
    assert message_id in row.execution_arn
    with get_database(settings.sqlalchemy_url).session() as session:
        executions = session.query(Execution).filter(Execution.arn == row.execution_arn).count()
    assert executions == 1


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ({"queue": "nowhere", "handler": "echo"}, 404, "not a known work queue"),
        ({"handler": "no-such-handler"}, 400, "no handler named"),
        ({"stateMachine": "no-such-machine"}, 404, "does not exist"),
        ({}, 400, "exactly one of handler and stateMachine"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(
    settings: Settings, client: TestClient, fields: dict[str, Any], status: int, reason: str
) -> None:
    fields = dict(fields)  # the parameters are shared between the database variants
    queue = fields.pop("queue", "default")
    response = client.post(f"/queues/{queue}/messages", json=fields, headers=auth(ADMIN_SECRET))
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    with get_database(settings.sqlalchemy_url).session() as session:
        assert session.query(QueueMessage).count() == 0


def test_http_producer(settings: Settings, client: TestClient) -> None:
    body = {"handler": "echo", "payload": {"n": 1}}
    assert client.post("/queues/default/messages", json=body).status_code == 401
    wrong = client.post("/queues/default/messages", json=body, headers=auth("nope"))
    assert wrong.status_code == 401
    viewer = client.post("/queues/default/messages", json=body, headers=auth(VIEWER_SECRET))
    assert viewer.status_code == 403
    bad_mode = client.post(
        "/queues/default/messages",
        json={**body, "mode": "later"},
        headers=auth(ADMIN_SECRET),
    )
    assert bad_mode.status_code == 422

    sent = client.post(
        "/queues/default/messages",
        json={**body, "mode": "async"},
        headers=auth(ADMIN_SECRET),
    )
    assert sent.status_code == 202, sent.text
    view = sent.json()
    assert (view["queue"], view["handler"], view["mode"], view["status"], view["payload"]) == (
        "default",
        "echo",
        "async",
        "queued",
        {"n": 1},
    )
    got = client.get(f"/queues/default/messages/{view['id']}", headers=auth(VIEWER_SECRET))
    assert got.status_code == 200
    assert got.json()["id"] == view["id"]
    assert (
        client.get("/queues/bus/messages/" + view["id"], headers=auth(VIEWER_SECRET)).status_code
        == 404
    )


SEND = """mutation($queue: String!, $handler: String, $payload: JSON, $mode: String!) {
  sendMessage(queue: $queue, handler: $handler, payload: $payload, mode: $mode) {
    id queue handler mode status payload
  }
}"""


def test_graphql_producer(settings: Settings, client: TestClient) -> None:
    args = {"queue": "default", "handler": "echo", "payload": {"n": 2}, "mode": "sync"}
    viewer = gql(client, SEND, VIEWER_SECRET, **args)
    assert "read-only" in viewer["errors"][0]["message"]
    unknown = gql(client, SEND, **{**args, "handler": "nope"})
    assert "no handler named 'nope'" in unknown["errors"][0]["message"]

    sent = gql(client, SEND, **args)
    assert "errors" not in sent, sent
    message = sent["data"]["sendMessage"]
    assert (message["status"], message["payload"], message["mode"]) == ("queued", {"n": 2}, "sync")

    messages.run(settings, message["id"])  # what the worker does with it
    found = gql(
        client,
        "query($id: String!) { queueMessage(id: $id) { status result } "
        'queueMessages(queue: "default", status: "succeeded") { id } }',
        VIEWER_SECRET,
        id=message["id"],
    )
    assert "errors" not in found, found
    assert found["data"]["queueMessage"] == {"status": "succeeded", "result": {"n": 2}}
    assert found["data"]["queueMessages"] == [{"id": message["id"]}]
    anonymous = client.post("/graphql", json={"query": "{ queueMessages { id } }"})
    assert anonymous.status_code == 401


@pytest.mark.slow
def test_real_worker_runs_a_sync_message(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Embedded stack (SQLite database and broker): send_and_enqueue, one worker, result stored;
    the same message enqueued again (a redelivery) does not run twice."""
    queue = f"scaling-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SMOKEHOUSE_SCALING_QUEUES", queue)  # read with the settings below
    settings = settings_factory()
    upgrade(settings.sqlalchemy_url)
    runs = tmp_path / "runs.txt"
    [message_id] = messages.send_and_enqueue(
        settings, queue, handler="scaling-test-double", payload={"n": 5, "path": str(runs)}
    )
    failed = messages.send_and_enqueue(settings, queue, handler="scaling-test-fail", payload=1)
    worker = start_worker(settings, "messages", queue, tmp_path)
    try:

        def finished(mid: str) -> bool:
            return load(settings, mid).status in ("succeeded", "failed")

        wait_for(lambda: finished(message_id) and finished(failed[0]), 60, what="messages")
        messages.enqueue(settings, [(message_id, queue)])  # redelivered after it finished
        [behind] = messages.send_and_enqueue(
            settings, queue, handler="scaling-test-double", payload={"n": 1}
        )
        wait_for(lambda: finished(behind), 60, what="the message behind the redelivery")
        row = load(settings, message_id)
        assert (row.status, row.result) == ("succeeded", {"n": 10})
        assert load(settings, failed[0]).error == "RuntimeError"
    finally:
        stop(worker)
    assert runs.read_text().split() == [message_id]


@pytest.mark.slow
def test_a_message_stored_while_the_broker_is_down_is_sent_by_the_sweeper(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SendMessage semantics: a stored message is accepted even if the broker is down; the
    scheduler's sweep sends it once the broker is back, and only once per grace period."""
    queue = f"scaling-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SMOKEHOUSE_SCALING_QUEUES", queue)  # read with the settings below
    up = settings_factory()
    upgrade(up.sqlalchemy_url)
    down = settings_factory(
        database_url=up.database_url, broker_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    runs = tmp_path / "runs.txt"
    [message_id] = messages.send_and_enqueue(
        down, queue, handler="scaling-test-double", payload={"n": 2, "path": str(runs)}
    )
    assert load(up, message_id).status == "queued"
    assert messages.sweep(up, grace_seconds=60) == 0  # not stale yet: nothing re-sent
    assert messages.sweep(up, grace_seconds=0.001) == 1
    assert messages.sweep(up, grace_seconds=60) == 0  # just sent: not again until the grace
    worker = start_worker(up, "sweep", queue, tmp_path)
    try:
        wait_for(lambda: load(up, message_id).status == "succeeded", 60, what="the swept message")
    finally:
        stop(worker)
    assert load(up, message_id).result == {"n": 4}
    assert runs.read_text().split() == [message_id]


@pytest.mark.slow
def test_a_message_that_kills_its_worker_is_dead_lettered_at_its_receive_cap(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each receive kills the pool process (Celery puts the message back); after two receives
    (the queue's cap) it is dead, not run again, and the worker goes on with the next message.
    Redriven, it gets a fresh budget. Before: it was received and killed a worker forever."""
    queue = f"scaling-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SMOKEHOUSE_SCALING_QUEUES", queue)
    caps = f"{queue}=2"
    settings = settings_factory(queues={"max_receive_counts": caps})
    upgrade(settings.sqlalchemy_url)
    attempts = tmp_path / "attempts.txt"
    [poison] = messages.send_and_enqueue(
        settings, queue, handler="scaling-test-kill-worker", payload={"path": str(attempts)}
    )
    worker = start_worker(settings, "poison", queue, tmp_path)
    try:
        wait_for(lambda: load(settings, poison).status == "dead", 90, what="the dead letter")
        row = load(settings, poison)
        assert row.error == "ReceiveCapExceeded"
        assert attempts.read_text().split() == ["1", "2"]  # never a third run
        [behind] = messages.send_and_enqueue(
            settings, queue, handler="scaling-test-double", payload={"n": 2}
        )
        wait_for(lambda: load(settings, behind).status == "succeeded", 60, what="the next one")

        with get_database(settings.sqlalchemy_url).session() as session:
            messages.redrive(session, settings, poison, utcnow())
        wait_for(lambda: attempts.read_text().split()[2:] == ["1"], 60, what="a fresh budget")
        with (
            get_database(settings.sqlalchemy_url).session() as session,
            pytest.raises(messages.MessageError, match="not dead-lettered"),
        ):
            messages.redrive(session, settings, behind, utcnow())
    finally:
        stop(worker)
