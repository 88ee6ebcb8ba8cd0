"""The developer guide's examples of every state type, path processing, intrinsics, Choice,
Map, Parallel, Retry and Catch, run end to end — boto3 → API → durable engine → real workers —
must end exactly as the pure interpreter ends them (same status, output, error and the same
kinds of history events)."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections import Counter
from typing import Any

import pytest

from app.db import utcnow
from app.handlers import HandlerContext, handlers
from app.workflows.asl import (
    NO_RESPONSE,
    Completion,
    Env,
    ScheduleTask,
    TaskError,
    compile_machine,
    run_to_completion,
)
from app.workflows.resources.handler import handler_name
from tests.integration.workflows.examples import EXAMPLES, SLOW
from tests.integration.workflows.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Run = tuple[dict[str, Any], list[dict[str, Any]]]  # (DescribeExecution, history)


@pytest.fixture(scope="module")
def runs(wf: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Run]]:
    """Start every example at once, then collect each execution's end and history."""
    counters = tmp_path_factory.mktemp("counters")
    started: dict[str, list[str]] = {}
    for name, (definition, inputs) in EXAMPLES.items():
        machine = wf.create(f"guide-{name}", definition)
        if name == "retry":
            inputs = [{"counter": str(counters / "flaky"), "fail": 2}]
        started[name] = [wf.start(machine, data) for data in inputs]
    return {
        name: [(wf.wait(arn, 60), wf.history(arn)) for arn in arns]
        for name, arns in started.items()
    }


def reference(name: str, data: Any) -> Completion:
    """The pure interpreter's run of the same example, the handlers called in-process."""
    definition, _ = EXAMPLES[name]

    def runner(command: ScheduleTask) -> Any:
        if command.resource == SLOW:
            return NO_RESPONSE  # it outlives its TimeoutSeconds
        handler = handlers.get(handler_name(command.resource) or "")
        try:
            return handler(command.parameters, HandlerContext("h", command.ref))
        except Exception as exc:
            kind = type(exc).__name__
            raise TaskError(
                kind, json.dumps({"errorMessage": str(exc), "errorType": kind})
            ) from exc

    return run_to_completion(compile_machine(definition), data, runner, Env.system(utcnow()))


def output(run: Run) -> Any:
    return json.loads(run[0]["output"]) if "output" in run[0] else None


def types(history: list[dict[str, Any]]) -> Counter[str]:
    return Counter(event["type"] for event in history)


@pytest.mark.parametrize(
    "name",
    ["pass", "paths", "choice", "wait", "parallel", "map", "catch", "jsonata", "variables"],
)
def test_ends_like_the_interpreter(runs: dict[str, list[Run]], name: str) -> None:
    _, inputs = EXAMPLES[name]
    for data, run in zip(inputs, runs[name], strict=True):
        expected = reference(name, data)
        described, history = run
        assert described["status"] == expected.status, described
        assert output(run) == expected.output
        assert described.get("error") == expected.error
        assert described.get("cause") == expected.cause
        assert types(history) == Counter(h.type for h in expected.history)
        assert [e["id"] for e in history] == list(range(1, len(history) + 1))


def test_example_outputs(runs: dict[str, list[Run]]) -> None:
    """A few outputs spelled out, so the comparison above cannot pass on a shared bug."""
    assert output(runs["pass"][0]) == {
        "georefOf": "Home",
        "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355},
    }
    assert output(runs["paths"][0]) == {
        "x": 40,
        "y": 2,
        "result": {"total": 42, "kind": "sum"},
        "kept": {"total": 42, "kind": "sum"},
    }
    assert [output(r) for r in runs["choice"][:3]] == ["public", "zero", "twenties"]
    assert (runs["choice"][3][0]["error"], runs["choice"][3][0]["cause"]) == (
        "DefaultStateError",
        "No Matches!",
    )
    assert output(runs["parallel"][0]) == [{"sum": 11}, {"sum": 22}]
    shipped = output(runs["map"][0])["detail"]["shipped"]
    assert shipped == [{"shipped": w + i} for i, w in enumerate((5, 7, 11, 13, 17))]
    caught = output(runs["catch"][0])
    assert caught["error"]["Error"] == "OrderRejected"
    assert json.loads(caught["error"]["Cause"])["errorMessage"] == "order 7 rejected"
    assert caught["timeout"] == {"Error": "States.Timeout"}


def test_jsonata_and_variables_end_to_end(runs: dict[str, list[Run]]) -> None:
    """Spelled out too: the outputs, and the variables each state assigned in its history."""
    assert [output(r) for r in runs["jsonata"]] == [
        {"total": 12, "labels": ["brisket #0 (big)", "ribs #1 (big)"]},
        {"total": 3, "labels": ["wings #0 (small)"]},
    ]
    assert output(runs["variables"][0]) == {"text": "hello Ada: 42"}
    assigned = {
        details["name"]: details["assignedVariables"]
        for event in runs["jsonata"][0][1]
        if (details := event.get("stateExitedEventDetails")) and "assignedVariables" in details
    }
    assert assigned["Price"] == {"total": "12", "cuts": '["brisket","ribs"]'}
    assert assigned["Size"] == {"size": '"big"'}


def test_map_respects_max_concurrency(runs: dict[str, list[Run]]) -> None:
    running = peak = 0
    for event in runs["map"][0][1]:
        if event["type"] == "MapIterationStarted":
            running += 1
            peak = max(peak, running)
        elif event["type"] in ("MapIterationSucceeded", "MapIterationFailed"):
            running -= 1
    assert peak == 2


def test_intrinsics(runs: dict[str, list[Run]]) -> None:
    got = output(runs["intrinsics"][0])
    uuid = got.pop("uuid")
    assert len(uuid) == 36
    assert got == {
        "greeting": "Hello, Ada Lovelace",
        "parsed": {"a": [1, 2]},
        "text": '{"k":1}',
        "array": ["Ada", 2, True],
        "parts": [[1, 2], [3, 4], [5]],
        "has": True,
        "range": [1, 3, 5, 7, 9],
        "third": 3,
        "length": 5,
        "unique": [1, 2, 3],
        "encoded": "QWRh",
        "decoded": "hello",
        "hash": hashlib.sha256(b"Ada").hexdigest(),
        "merged": {"k": 2, "m": 3},
        "sum": 42,
        "split": ["a", "b", "c"],
    }


def test_retry_waits_on_durable_timers(runs: dict[str, list[Run]]) -> None:
    described, history = runs["retry"][0]
    assert described["status"] == "SUCCEEDED"
    assert output(runs["retry"][0]) == {"calls": 3}
    failed = [e for e in history if e["type"] == "TaskFailed"]
    assert [e["taskFailedEventDetails"]["error"] for e in failed] == ["FlakyError"] * 2
    scheduled = [e["timestamp"] for e in history if e["type"] == "TaskScheduled"]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(scheduled)]
    assert all(gap >= 0.9 for gap in gaps), gaps  # IntervalSeconds 1, BackoffRate 1


def test_wait_state_waited(runs: dict[str, list[Run]]) -> None:
    described, history = runs["wait"][0]
    entered = next(e for e in history if e["type"] == "WaitStateEntered")["timestamp"]
    exited = next(e for e in history if e["type"] == "WaitStateExited")["timestamp"]
    assert (exited - entered).total_seconds() >= 0.95
    assert described["status"] == "SUCCEEDED"


def test_task_history_has_aws_fields(runs: dict[str, list[Run]]) -> None:
    history = runs["paths"][0][1]
    scheduled = next(e for e in history if e["type"] == "TaskScheduled")
    details = scheduled["taskScheduledEventDetails"]
    assert details["resourceType"] == "smokehouse"
    assert details["resource"] == "task:wf-add"
    assert details["region"] == "us-east-1"
    name = runs["paths"][0][0]["name"]
    assert json.loads(details["parameters"]) == {"a": 40, "b": 2, "who": name}
    assert time.time() - scheduled["timestamp"].timestamp() < 600
