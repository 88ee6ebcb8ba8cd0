"""Activities through boto3 against the real app: CreateActivity & co., and Task states whose
``Resource`` is an activity ARN, run by worker threads here that poll ``GetActivityTask`` and
answer with ``SendTaskSuccess``/``SendTaskFailure``/``SendTaskHeartbeat`` — on SQLite (embedded)
and PostgreSQL + Redis (production).

The expected histories are AWS's, as recorded against AWS in LocalStack's
``tests/aws/services/stepfunctions/v2/activities/test_activities.snapshot.json`` (ActivityScheduled
→ ActivityStarted with ``workerName`` → ActivitySucceeded/ActivityFailed; an activity that does
not exist fails the execution with ``States.Runtime``)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from app import tagging
from app.db import get_database
from app.workflows.activities import api as activities_api
from tests.integration.workflows.stack import Stack

pytestmark = [pytest.mark.integration]


@pytest.fixture(autouse=True)
def short_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app runs in this process: a 3 s long poll keeps the tests quick (AWS's is 60 s)."""
    monkeypatch.setattr(activities_api, "POLL_SECONDS", 3.0)


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def task_on(activity_arn: str, **extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "ActivityTask",
        "States": {
            "ActivityTask": {"Type": "Task", "Resource": activity_arn, **extra, "End": True}
        },
    }


def poll(wf: Stack, activity_arn: str, worker: str | None = "worker-1") -> dict[str, Any]:
    kwargs = {"workerName": worker} if worker else {}
    got: dict[str, Any] = wf.client().get_activity_task(activityArn=activity_arn, **kwargs)
    got.pop("ResponseMetadata", None)
    return got


def poll_until(wf: Stack, activity_arn: str, timeout: float = 20, **kw: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = poll(wf, activity_arn, **kw)
        if got.get("taskToken"):
            return got
    raise AssertionError(f"no task of {activity_arn} within {timeout} s")


def stored_tags(wf: Stack, name: str) -> dict[str, str]:
    """The activity's tags as stored (TagResource & co. on activity ARNs need
    ``app.workflows.api._tag_key`` to resolve them: see the activities' report)."""
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        return tagging.tags_of(session, f"states:activity:{name}")


def types_of(wf: Stack, execution: str) -> list[str]:
    return [e["type"] for e in wf.history(execution)]


# --- the control plane -------------------------------------------------------------------------


def test_create_describe_list_delete(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    created = sfn.create_activity(name=unique, tags=[{"key": "team", "value": "pit"}])
    arn = created["activityArn"]
    assert arn == f"arn:aws:states:{wf.settings.region}:{wf.settings.account_id}:activity:{unique}"
    # idempotent by name; different tags are ignored, not applied (AWS's documented rule)
    again = sfn.create_activity(name=unique, tags=[{"key": "team", "value": "other"}])
    assert again["activityArn"] == arn
    assert again["creationDate"] == created["creationDate"]
    assert stored_tags(wf, unique) == {"team": "pit"}
    described = sfn.describe_activity(activityArn=arn)
    assert (described["activityArn"], described["name"]) == (arn, unique)
    assert described["creationDate"] == created["creationDate"]
    listed = [a["activityArn"] for a in sfn.list_activities()["activities"]]
    assert arn in listed

    with pytest.raises(ClientError) as exc:
        sfn.describe_activity(activityArn=arn.replace(":activity:", ":stateMachine:"))
    assert code(exc) == "InvalidArn"
    with pytest.raises(ClientError) as exc:
        sfn.create_activity(name="no spaces allowed")
    assert code(exc) == "InvalidName"
    with pytest.raises(ClientError) as exc:
        sfn.get_activity_task(activityArn=arn + "-missing")
    assert code(exc) == "ActivityDoesNotExist"

    sfn.delete_activity(activityArn=arn)
    sfn.delete_activity(activityArn=arn)  # deleting what is gone is not an error
    assert stored_tags(wf, unique) == {}
    with pytest.raises(ClientError) as exc:
        sfn.describe_activity(activityArn=arn)
    assert code(exc) == "ActivityDoesNotExist"
    assert arn not in [a["activityArn"] for a in sfn.list_activities()["activities"]]


def test_list_activities_pages(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    arns = {sfn.create_activity(name=f"{unique[:60]}-{i}")["activityArn"] for i in range(3)}
    seen: list[str] = []
    for page in sfn.get_paginator("list_activities").paginate(PaginationConfig={"PageSize": 2}):
        seen.extend(a["activityArn"] for a in page["activities"])
    assert arns <= set(seen)
    assert len(seen) == len(set(seen))


# --- workers -----------------------------------------------------------------------------------


def test_worker_succeeds_the_task(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    machine = wf.create(unique, task_on(activity))
    execution = wf.start(machine, {"Value1": "Hello", "Value2": "World"})

    task = poll_until(wf, activity, worker="BASE_ID_ACTIVITY_CONSUMER")
    assert json.loads(task["input"]) == {"Value1": "Hello", "Value2": "World"}
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    sfn.send_task_heartbeat(taskToken=task["taskToken"])
    sfn.send_task_success(taskToken=task["taskToken"], output=json.dumps({"done": 1}))

    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"done": 1}
    history = wf.history(execution)
    assert [e["type"] for e in history] == [
        "ExecutionStarted",
        "TaskStateEntered",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivitySucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    scheduled = history[2]["activityScheduledEventDetails"]
    assert scheduled["resource"] == activity
    assert json.loads(scheduled["input"]) == {"Value1": "Hello", "Value2": "World"}
    assert history[3]["activityStartedEventDetails"] == {"workerName": "BASE_ID_ACTIVITY_CONSUMER"}
    assert json.loads(history[4]["activitySucceededEventDetails"]["output"]) == {"done": 1}
    with pytest.raises(ClientError) as exc:  # the task is over
        sfn.send_task_success(taskToken=task["taskToken"], output="{}")
    assert code(exc) == "TaskTimedOut"
    assert poll(wf, activity) == {}  # handed out once


def test_worker_without_a_name(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    execution = wf.start(wf.create(unique, task_on(activity)), {"n": 1})
    task = poll_until(wf, activity, worker=None)
    sfn.send_task_success(taskToken=task["taskToken"], output=task["input"])
    assert wf.wait(execution)["status"] == "SUCCEEDED"
    started = [e for e in wf.history(execution) if e["type"] == "ActivityStarted"]
    assert started[0]["activityStartedEventDetails"] == {}


def test_worker_failure_is_caught(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    definition = task_on(
        activity, Catch=[{"ErrorEquals": ["Programmatic Error"], "Next": "Handled"}]
    )
    del definition["States"]["ActivityTask"]["End"]
    definition["States"]["ActivityTask"]["Next"] = "Done"
    definition["States"]["Done"] = {"Type": "Succeed"}
    definition["States"]["Handled"] = {"Type": "Pass", "End": True}
    execution = wf.start(wf.create(unique, definition), {"n": 2})
    task = poll_until(wf, activity)
    sfn.send_task_failure(taskToken=task["taskToken"], error="Programmatic Error", cause="boom")
    described = wf.wait(execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"Error": "Programmatic Error", "Cause": "boom"}
    failed = [e for e in wf.history(execution) if e["type"] == "ActivityFailed"]
    assert failed[0]["activityFailedEventDetails"] == {
        "error": "Programmatic Error",
        "cause": "boom",
    }


def test_worker_failure_fails_the_execution(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    execution = wf.start(wf.create(unique, task_on(activity)), {"n": 3})
    task = poll_until(wf, activity)
    sfn.send_task_failure(taskToken=task["taskToken"], error="Declined", cause="no stock")
    described = wf.wait(execution)
    assert (described["status"], described["error"], described["cause"]) == (
        "FAILED",
        "Declined",
        "no stock",
    )
    assert types_of(wf, execution)[-2:] == ["ActivityFailed", "ExecutionFailed"]


def test_empty_poll_after_the_wait(wf: Stack, unique: str) -> None:
    activity = wf.client().create_activity(name=unique)["activityArn"]
    began = time.monotonic()
    assert poll(wf, activity) == {}  # no taskToken, no input
    assert 2.5 <= time.monotonic() - began < 10


def test_a_waiting_poll_wakes_when_a_task_arrives(
    wf: Stack, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wake-up, not the periodic re-check, answers the poll."""
    monkeypatch.setattr(activities_api, "POLL_SECONDS", 20.0)
    monkeypatch.setattr(activities_api, "RECHECK_SECONDS", 15.0)
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    machine = wf.create(unique, task_on(activity))
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(poll, wf, activity)
        time.sleep(1.0)  # the poll is waiting
        assert not waiting.done()
        began = time.monotonic()
        execution = wf.start(machine, {"wake": True})
        task = waiting.result(timeout=20)
        assert time.monotonic() - began < 3
    assert json.loads(task["input"]) == {"wake": True}
    sfn.send_task_success(taskToken=task["taskToken"], output="{}")
    assert wf.wait(execution)["status"] == "SUCCEEDED"


def test_concurrent_pollers_never_share_a_task(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    machine = wf.create(unique, task_on(activity))
    executions = [wf.start(machine, {"i": i}) for i in range(6)]
    got: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if len(got) >= len(executions):
                    return
            task = poll(wf, activity, worker=name)
            if task.get("taskToken"):
                with lock:
                    got.append(task)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, [f"w{i}" for i in range(4)]))
    tokens = [t["taskToken"] for t in got]
    assert len(tokens) == len(executions) == len(set(tokens))
    assert sorted(json.loads(t["input"])["i"] for t in got) == list(range(6))
    for task in got:
        sfn.send_task_success(taskToken=task["taskToken"], output=task["input"])
    for execution in executions:
        assert wf.wait(execution)["status"] == "SUCCEEDED"
        assert types_of(wf, execution).count("ActivityStarted") == 1


def test_activity_that_does_not_exist_fails_the_execution(wf: Stack, unique: str) -> None:
    """AWS accepts the definition and fails the execution with ``States.Runtime`` (no Catch
    handles it)."""
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    sfn.delete_activity(activityArn=activity)
    definition = task_on(activity, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Handled"}])
    definition["States"]["Handled"] = {"Type": "Pass", "End": True}
    execution = wf.start(wf.create(unique, definition), {"n": 4})
    described = wf.wait(execution)
    assert described["status"] == "FAILED"
    assert described["error"] == "States.Runtime"
    assert described["cause"] == (
        "An error occurred while executing the state 'ActivityTask' (entered at the event id "
        f"#2). The activity {activity} does not exist."
    )


def test_stopped_execution_withdraws_its_task(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    machine = wf.create(unique, task_on(activity))
    stopped = wf.start(machine, {"n": "stopped"})
    sfn.stop_execution(executionArn=stopped)
    live = wf.start(machine, {"n": "live"})
    task = poll_until(wf, activity)
    assert json.loads(task["input"]) == {"n": "live"}  # the stopped one's task is gone
    sfn.send_task_success(taskToken=task["taskToken"], output="{}")
    assert wf.wait(live)["status"] == "SUCCEEDED"


def test_stop_after_the_poll_times_the_task_out(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    execution = wf.start(wf.create(unique, task_on(activity)), {"n": 5})
    task = poll_until(wf, activity)
    sfn.stop_execution(executionArn=execution)
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken=task["taskToken"], output="{}")
    assert code(exc) == "TaskTimedOut"
    with pytest.raises(ClientError) as exc:
        sfn.send_task_heartbeat(taskToken=task["taskToken"])
    assert code(exc) == "TaskTimedOut"


@pytest.mark.slow
def test_activity_heartbeat_timeout(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    execution = wf.start(wf.create(unique, task_on(activity, HeartbeatSeconds=2)), {"n": 6})
    task = poll_until(wf, activity)
    sfn.send_task_heartbeat(taskToken=task["taskToken"])  # alive for 2 s more, then silence
    described = wf.wait(execution, timeout=30)
    assert (described["status"], described["error"]) == ("FAILED", "States.HeartbeatTimeout")
    timed_out = [e for e in wf.history(execution) if e["type"] == "ActivityTimedOut"]
    assert timed_out[0]["activityTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"
    with pytest.raises(ClientError) as exc:
        sfn.send_task_success(taskToken=task["taskToken"], output="{}")
    assert code(exc) == "TaskTimedOut"


@pytest.mark.slow
def test_timeout_counts_from_scheduling(wf: Stack, unique: str) -> None:
    """TimeoutSeconds runs from ActivityScheduled: a task no worker polled times out."""
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    execution = wf.start(wf.create(unique, task_on(activity, TimeoutSeconds=2)), {"n": 7})
    described = wf.wait(execution, timeout=30)
    assert (described["status"], described["error"]) == ("FAILED", "States.Timeout")
    assert "ActivityStarted" not in types_of(wf, execution)
    assert poll(wf, activity) == {}  # the timed-out task is not handed out


def after_echo(activity: str) -> dict[str, Any]:
    return {
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Task",
                "Resource": "arn:aws:states:::smokehouse:task:echo",
                "Next": "ActivityTask",
            },
            "ActivityTask": {"Type": "Task", "Resource": activity, "End": True},
        },
    }


def test_activity_after_a_worker_task(wf: Stack, unique: str) -> None:
    """A smokehouse worker runs the first Task; the activity task it schedules still reaches a
    poller, once."""
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    execution = wf.start(wf.create(unique, after_echo(activity)), {"n": 8})
    task = poll_until(wf, activity, worker="after-echo")
    assert json.loads(task["input"]) == {"n": 8}
    sfn.send_task_success(taskToken=task["taskToken"], output=json.dumps({"ok": True}))
    assert wf.wait(execution)["status"] == "SUCCEEDED"
    assert types_of(wf, execution).count("ActivityStarted") == 1
    assert poll(wf, activity) == {}


def test_activity_after_a_worker_task_records_the_worker(wf: Stack, unique: str) -> None:
    sfn = wf.client()
    activity = sfn.create_activity(name=unique)["activityArn"]
    execution = wf.start(wf.create(unique, after_echo(activity)), {"n": 9})
    task = poll_until(wf, activity, worker="after-echo")
    sfn.send_task_success(taskToken=task["taskToken"], output="{}")
    assert wf.wait(execution)["status"] == "SUCCEEDED"
    history = wf.history(execution)
    started = [e for e in history if e["type"] == "ActivityStarted"]
    assert started[0]["activityStartedEventDetails"] == {"workerName": "after-echo"}
