"""The durable engine on SQLite and PostgreSQL, in-process (the broker replaced by a recorder):
compare-and-set steps, duplicate events, conflicting steps, claims and the sweeper."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.config import Settings
from app.db import get_database, utcnow
from app.handlers import load_handler_modules
from app.migrate import upgrade
from app.workflows import callbacks, dispatch, engine, service, store, sweep
from app.workflows.asl import Env, Start, TaskSucceeded, advance, compile_machine
from app.workflows.models import Execution, ExecutionEvent, ExecutionTask

ECHO = "arn:aws:states:::smokehouse:task:echo"


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], database_url: str) -> Settings:
    """On SQLite and on PostgreSQL (where a step is one fused statement)."""
    built = settings_factory(
        database_url=database_url, workflow_task_lease_seconds=5, workflow_sweep_grace_seconds=1
    )
    upgrade(built.sqlalchemy_url)
    load_handler_modules()  # the built-in echo handler
    return built


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What would have gone to the broker."""
    log: list[tuple[str, Any]] = []

    def send(_settings: Settings, tasks: Any = (), timers: Any = ()) -> int:
        log.extend(("task", t) for t in tasks)
        log.extend(("timer", t) for t in timers)
        return len(tasks) + len(timers)

    monkeypatch.setattr(dispatch, "send", send)
    monkeypatch.setattr(dispatch, "enqueue_deliveries", lambda *_a, **_k: 0)
    return log


def start(settings: Settings, definition: dict[str, Any], data: Any = None) -> service.Started:
    with get_database(settings.sqlalchemy_url).session() as session:
        machine, _ = service.create_machine(
            session,
            settings,
            name="m",
            definition=json.dumps(definition),
            role_arn="arn:aws:iam::000000000000:role/r",
            now=utcnow(),
        )
        started = service.start_execution(
            session, settings, machine, name="e", input_text=json.dumps(data or {}), now=utcnow()
        )
    written = started.written
    dispatch.after_commit(settings, started.execution_id, written.tasks, written.timers, [])
    return started


def execution(settings: Settings, execution_id: int) -> tuple[Execution, list[str]]:
    with get_database(settings.sqlalchemy_url).session() as session:
        row = session.get(Execution, execution_id)
        assert row is not None
        types = session.scalars(
            select(ExecutionEvent.type)
            .where(ExecutionEvent.execution_id == execution_id)
            .order_by(ExecutionEvent.event_id)
        ).all()
        return row, list(types)


def task(**more: Any) -> dict[str, Any]:
    return {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": ECHO, "End": True, **more}},
    }


def succeed(settings: Settings, execution_id: int, ref: str, output: Any, **kw: Any) -> Any:
    return engine.apply(
        settings,
        execution_id,
        lambda _s, _l: ([(TaskSucceeded(ref, output), utcnow())], []),
        rows={ref: "done"},
        **kw,
    )


def test_a_task_runs_and_the_execution_ends(settings: Settings, sent: list[Any]) -> None:
    started = start(settings, task(), {"hello": 1})
    assert sent == [("task", (started.execution_id, "T@1.0"))]
    assert engine.run_task(settings, started.execution_id, "T@1.0") == "ran"
    row, types = execution(settings, started.execution_id)
    assert (row.status, json.loads(row.output or "null")) == ("SUCCEEDED", {"hello": 1})
    assert types == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    # A redelivered message finds the task done: nothing runs, nothing is written.
    assert engine.run_task(settings, started.execution_id, "T@1.0") == "skipped"
    assert execution(settings, started.execution_id)[0].version == row.version


def test_a_duplicate_event_changes_nothing(settings: Settings, sent: list[Any]) -> None:
    started = start(settings, task())
    assert succeed(settings, started.execution_id, "T@1.0", {"n": 1}).applied
    before = execution(settings, started.execution_id)
    again = succeed(settings, started.execution_id, "T@1.0", {"n": 2})
    assert not again.applied
    after = execution(settings, started.execution_id)
    assert (after[0].version, after[1], after[0].output) == (
        before[0].version,
        before[1],
        before[0].output,
    )


def test_a_step_from_a_stale_read_conflicts_and_is_reapplied(
    settings: Settings, sent: list[Any]
) -> None:
    both = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": "A",
                        "States": {"A": {"Type": "Task", "Resource": ECHO, "End": True}},
                    },
                    {
                        "StartAt": "B",
                        "States": {"B": {"Type": "Task", "Resource": ECHO, "End": True}},
                    },
                ],
            }
        },
    }
    started = start(settings, both)
    with get_database(settings.sqlalchemy_url).session() as session:
        stale = store.load(session, started.execution_id)
    assert stale is not None
    assert succeed(settings, started.execution_id, "P@1.0[1]/B@1.0", "b").applied
    # This worker read the execution before B's step committed: its CAS fails, it reloads.
    step = succeed(settings, started.execution_id, "P@1.0[0]/A@1.0", "a", cached=stale)
    assert step.applied
    row, types = execution(settings, started.execution_id)
    assert row.status == "SUCCEEDED"
    assert json.loads(row.output or "null") == ["a", "b"]
    assert row.version == stale.version + 2
    assert types.count("TaskSucceeded") == 2


def test_commands_that_cancel_out_leave_no_rows(settings: Settings, sent: list[Any]) -> None:
    definition = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": "Slow",
                        "States": {
                            "Slow": {
                                "Type": "Task",
                                "Resource": ECHO,
                                "TimeoutSeconds": 9,
                                "End": True,
                            }
                        },
                    },
                    {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Boom"}}},
                ],
            }
        },
    }
    started = start(settings, definition)
    assert execution(settings, started.execution_id)[0].status == "FAILED"
    with get_database(settings.sqlalchemy_url).session() as session:
        assert session.scalars(select(ExecutionTask)).all() == []
    assert sent == []


def test_a_dead_workers_task_is_found_and_started_once(settings: Settings, sent: list[Any]) -> None:
    started = start(settings, task())
    database = get_database(settings.sqlalchemy_url)
    claimed: list[Any] = []

    with database.sessions() as session:  # a worker claims the task and dies running it
        claimed.append(engine._claim(settings, session, started.execution_id, "T@1.0"))
    assert claimed[0] is not None
    sent.clear()
    assert sweep.sweep(settings) == 0  # the claim is fresh: nobody touches it
    with database.session() as session:  # the lease lapses
        session.execute(
            update(ExecutionTask).values(
                claimed_until=utcnow() - timedelta(seconds=1),
                enqueued_at=utcnow() - timedelta(seconds=5),
            )
        )
    assert sweep.sweep(settings) == 1
    assert sent == [("task", (started.execution_id, "T@1.0"))]
    assert engine.run_task(settings, started.execution_id, "T@1.0") == "ran"
    row, types = execution(settings, started.execution_id)
    assert row.status == "SUCCEEDED"
    assert types.count("TaskStarted") == 1
    with database.session() as session:
        attempts = session.scalar(select(ExecutionTask.attempts))
    assert attempts == 2


def test_far_timers_wait_for_the_sweeper(settings: Settings, sent: list[Any]) -> None:
    started = start(
        settings, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
    )
    assert sent == []  # an hour away: no broker holds it
    assert sweep.sweep(settings) == 0
    later = utcnow() + timedelta(seconds=3590)
    assert sweep.sweep(settings, now=later) == 1
    assert sent[0][0] == "timer"
    assert sent[0][1][:2] == (started.execution_id, "W@1:wait")
    assert engine.fire_timer(settings, started.execution_id, "W@1:wait") == "early"


def test_a_callback_token_waits_then_answers(settings: Settings, sent: list[Any]) -> None:
    definition = task(Parameters={"token.$": "$$.Task.Token"})
    definition["States"]["T"]["Resource"] = ECHO + ".waitForTaskToken"
    started = start(settings, definition)
    assert engine.run_task(settings, started.execution_id, "T@1.0") == "ran"
    with get_database(settings.sqlalchemy_url).session() as session:
        token, status = session.execute(
            select(ExecutionTask.task_token, ExecutionTask.status)
        ).one()
    assert status == "waiting"
    assert execution(settings, started.execution_id)[0].status == "RUNNING"
    callbacks.send_success(settings, token, '{"ok": true}')
    assert execution(settings, started.execution_id)[0].status == "SUCCEEDED"
    with pytest.raises(Exception, match="Task Timed Out"):
        callbacks.send_success(settings, token, "{}")


def test_dump_state_is_to_json() -> None:
    machine = compile_machine(task())
    state = advance(machine, None, Start({"x": [1, "é"]}), Env.system(utcnow())).state
    assert store.dump_state(state) == state.to_json()


def test_a_result_after_the_deadline_finds_the_task_timed_out(
    settings: Settings, sent: list[Any]
) -> None:
    """No worker was free when the timeout came due; the late result must not win."""
    started = start(settings, task(TimeoutSeconds=30))
    with get_database(settings.sqlalchemy_url).session() as session:
        session.execute(
            update(ExecutionTask)
            .where(ExecutionTask.ref == "T@1.0:timeout")
            .values(due_at=utcnow() - timedelta(seconds=1))
        )
    assert engine.run_task(settings, started.execution_id, "T@1.0") == "ran"
    row, types = execution(settings, started.execution_id)
    assert (row.status, row.error) == ("FAILED", "States.Timeout")
    assert "TaskTimedOut" in types
    assert "TaskSucceeded" not in types
