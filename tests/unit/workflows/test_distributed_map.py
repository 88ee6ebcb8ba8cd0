"""Distributed Map in the pure interpreter: the Map Run's events, child-execution tasks, the
reader and writer host tasks, batching, failure thresholds, UpdateMapRun, Stop.

The children are run by a task runner that executes the ItemProcessor as an execution of its
own (as the host does), answering with DescribeExecution's shape the way the host does.
Sources: "Using Map state in Distributed mode", "ItemReader (Map)", "ItemBatcher (Map)",
"ResultWriter (Map)", "Tolerated failure threshold for Distributed Map state" (AWS Step
Functions developer guide)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from app.workflows.asl import (
    CancelTask,
    Env,
    MapRunUpdated,
    ScheduleTask,
    Start,
    Stop,
    TaskError,
    TaskFailed,
    TaskSucceeded,
    advance,
    compile_machine,
    distributed,
    run_to_completion,
    validate_definition,
)

from .conftest import T0, env

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"


def dmap(**fields: Any) -> dict[str, Any]:
    processor = fields.pop(
        "processor",
        {"StartAt": "Work", "States": {"Work": {"Type": "Pass", "End": True}}},
    )
    execution_type = fields.pop("execution_type", "STANDARD")
    return {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type},
                    **processor,
                },
                "End": True,
                **fields,
            }
        },
    }


def child_runner(
    machine: Any, fail: Callable[[Any], bool] = lambda _: False, seen: list[Any] | None = None
) -> Callable[[ScheduleTask], Any]:
    """Run each Map Run child as an execution of the ItemProcessor (as the host does); answer
    with the ``.sync``-style description, a failure with its JSON as the cause."""

    def runner(command: ScheduleTask) -> Any:
        assert command.resource == distributed.ITERATION, command.resource
        params = command.parameters
        if seen is not None:
            seen.append(params)
        child = compile_machine(machine.processor_definition(params["Processor"]))
        done = run_to_completion(child, params["Input"], lambda c: c.parameters, env())
        view = {
            "ExecutionArn": f"{params['StateMachineArn']}:child-{params['Index']}",
            "Input": json.dumps(params["Input"]),
            "Status": "FAILED" if fail(params["Input"]) else done.status,
        }
        if fail(params["Input"]):
            view.update(Error="Boom", Cause="bad item")
            raise TaskError("States.TaskFailed", json.dumps(view))
        view["Output"] = json.dumps(done.output)
        return view

    return runner


def run_map(definition: dict[str, Any], input: Any, runner: Any = None, **kw: Any) -> Any:
    machine = compile_machine(definition)
    start = Start(input, state_machine_id=MACHINE, state_machine_name="orders")
    return run_to_completion(
        machine,
        input,
        runner or child_runner(machine, **kw),
        env(),
        start=start,
        json_roundtrip=True,
    )


def types(done: Any) -> list[str]:
    return [h.type for h in done.history]


def test_inline_items_run_as_children_and_give_their_outputs_in_order() -> None:
    definition = dmap(
        ItemsPath="$.orders",
        ItemSelector={"id.$": "$$.Map.Item.Value", "at.$": "$$.Map.Item.Index"},
        Label="Orders",
    )
    seen: list[Any] = []
    done = run_map(definition, {"orders": ["a", "b", "c"]}, seen=seen)
    assert done.status == "SUCCEEDED"
    assert done.output == [{"id": "a", "at": 0}, {"id": "b", "at": 1}, {"id": "c", "at": 2}]
    assert types(done) == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapRunStarted",
        "MapRunSucceeded",
        "MapStateSucceeded",
        "MapStateExited",
        "ExecutionSucceeded",
    ]
    started = done.history[2].to_dict()
    assert started["mapStateStartedEventDetails"] == {"length": 3}
    arn = done.history[3].to_dict()["mapRunStartedEventDetails"]["mapRunArn"]
    assert arn.startswith("arn:aws:states:us-east-1:123456789012:mapRun:orders/Orders:")
    assert {p["StateMachineArn"] for p in seen} == {f"{MACHINE}/Orders"}
    assert {p["MapRunArn"] for p in seen} == {arn}
    assert [p["Index"] for p in seen] == [0, 1, 2]


def test_label_defaults_to_the_state_name_and_concurrency_is_bounded() -> None:
    machine = compile_machine(dmap(MaxConcurrency=2))
    step = advance(machine, None, Start([1, 2, 3, 4, 5], state_machine_id=MACHINE), env())
    tasks = [c for c in step.commands if isinstance(c, ScheduleTask)]
    assert [t.ref for t in tasks] == ["M@1.0[0]", "M@1.0[1]"]
    assert tasks[0].parameters["StateMachineArn"] == f"{MACHINE}/M"
    step = advance(machine, step.state, TaskSucceeded("M@1.0[1]", {"Output": "2"}), env())
    assert [c.ref for c in step.commands if isinstance(c, ScheduleTask)] == ["M@1.0[2]"]
    # a duplicate answer changes nothing
    again = advance(machine, step.state, TaskSucceeded("M@1.0[1]", {"Output": "2"}), env())
    assert again.ignored


def test_one_failure_fails_the_run_without_thresholds() -> None:
    done = run_map(dmap(), [1, 2, 3], fail=lambda item: item == 2)
    assert done.status == "FAILED"
    assert done.error == "States.ExceedToleratedFailureThreshold"
    assert done.cause == "The specified tolerated failure threshold was exceeded"
    failed = next(h.to_dict() for h in done.history if h.type == "MapRunFailed")
    assert failed["mapRunFailedEventDetails"] == {
        "error": "States.ExceedToleratedFailureThreshold",
        "cause": "The specified tolerated failure threshold was exceeded",
    }
    assert "MapStateFailed" in types(done)


def test_tolerated_failures_keep_the_failed_childs_description() -> None:
    done = run_map(dmap(ToleratedFailureCount=1), [1, 2, 3], fail=lambda item: item == 2)
    assert done.status == "SUCCEEDED"
    assert done.output[0] == 1
    assert done.output[1]["Status"] == "FAILED"
    assert done.output[1]["Error"] == "Boom"
    assert done.output[2] == 3


def test_tolerated_percentage_from_a_path() -> None:
    definition = dmap(ItemsPath="$.items", ToleratedFailurePercentagePath="$.pct")
    odd = lambda item: item % 2 == 1  # noqa: E731
    assert run_map(definition, {"items": [1, 2, 3, 4], "pct": 50}, fail=odd).status == "SUCCEEDED"
    done = run_map(definition, {"items": [1, 2, 3, 4], "pct": 49}, fail=odd)
    assert done.error == "States.ExceedToleratedFailureThreshold"


def test_threshold_failure_is_caught_and_cancels_running_children() -> None:
    definition = dmap(
        Catch=[{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "Next": "Done"}]
    )
    definition["States"]["M"].pop("End")
    definition["States"]["M"]["Next"] = "Done"
    definition["States"]["Done"] = {"Type": "Pass", "End": True}
    machine = compile_machine(definition)
    step = advance(machine, None, Start([1, 2, 3], state_machine_id=MACHINE), env())
    step = advance(machine, step.state, TaskFailed("M@1.0[0]", "States.TaskFailed", "x"), env())
    assert sorted(c.ref for c in step.commands if isinstance(c, CancelTask)) == [
        "M@1.0[1]",
        "M@1.0[2]",
    ]
    assert step.status == "SUCCEEDED"
    assert step.output["Error"] == "States.ExceedToleratedFailureThreshold"


def test_item_batcher_groups_items_with_batch_input() -> None:
    definition = dmap(
        ItemBatcher={"MaxItemsPerBatch": 2, "BatchInput": {"job.$": "$.job"}},
        ItemsPath="$.items",
    )
    seen: list[Any] = []
    done = run_map(definition, {"job": 7, "items": [1, 2, 3, 4, 5]}, seen=seen)
    assert [p["Input"] for p in seen] == [
        {"BatchInput": {"job": 7}, "Items": [1, 2]},
        {"BatchInput": {"job": 7}, "Items": [3, 4]},
        {"BatchInput": {"job": 7}, "Items": [5]},
    ]
    assert done.output == [p["Input"] for p in seen]


def test_batch_failure_counts_its_items_against_the_percentage() -> None:
    # 5 items in batches of 2: the failed batch holds 2 of 5 items = 40 %
    definition = dmap(ItemBatcher={"MaxItemsPerBatch": 2}, ToleratedFailurePercentage=40)
    fail_first = lambda batch: batch["Items"][0] == 1  # noqa: E731
    assert run_map(definition, [1, 2, 3, 4, 5], fail=fail_first).status == "SUCCEEDED"
    definition = dmap(ItemBatcher={"MaxItemsPerBatch": 2}, ToleratedFailurePercentage=39.9)
    assert run_map(definition, [1, 2, 3, 4, 5], fail=fail_first).status == "FAILED"


def test_item_reader_is_a_host_task_before_the_children() -> None:
    definition = dmap(
        ItemReader={
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON", "MaxItemsPath": "$.max"},
            "Parameters": {"Bucket.$": "$.bucket", "Key": "items.json"},
        }
    )
    machine = compile_machine(definition)
    children = child_runner(machine)
    reads: list[Any] = []

    def runner(command: ScheduleTask) -> Any:
        if command.resource == distributed.READER:
            reads.append(command.parameters)
            return [{"n": 1}, {"n": 2}]
        return children(command)

    start = Start({"bucket": "b", "max": 2}, state_machine_id=MACHINE)
    done = run_to_completion(machine, start.input, runner, env(), start=start)
    assert done.output == [{"n": 1}, {"n": 2}]
    assert reads[0]["Resource"] == "arn:aws:states:::s3:getObject"
    assert reads[0]["Parameters"] == {"Bucket": "b", "Key": "items.json"}
    assert reads[0]["ReaderConfig"] == {"InputType": "JSON", "MaxItems": 2}
    assert reads[0]["MapRunArn"].startswith("arn:aws:states:us-east-1:123456789012:mapRun:")
    assert done.history[2].to_dict()["mapStateStartedEventDetails"] == {"length": 0}
    assert "TaskScheduled" not in types(done)


def test_reader_failure_fails_the_run_with_its_error() -> None:
    definition = dmap(
        ItemReader={
            "Resource": "arn:aws:states:::s3:listObjectsV2",
            "Parameters": {"Bucket": "b"},
        }
    )
    machine = compile_machine(definition)

    def runner(command: ScheduleTask) -> Any:
        raise TaskError("States.ItemReaderFailed", "no such bucket")

    done = run_to_completion(machine, {}, runner, env(), start=Start({}, state_machine_id=MACHINE))
    assert (done.error, done.cause) == ("States.ItemReaderFailed", "no such bucket")
    assert types(done)[-3:] == ["MapRunFailed", "MapStateFailed", "ExecutionFailed"]


def test_result_writer_answer_is_the_maps_output() -> None:
    definition = dmap(
        ResultWriter={
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix.$": "$.prefix"},
        },
        ItemsPath="$.items",
    )
    machine = compile_machine(definition)
    children = child_runner(machine)
    writes: list[Any] = []

    def runner(command: ScheduleTask) -> Any:
        if command.resource == distributed.WRITER:
            writes.append(command.parameters)
            p = command.parameters
            key = f"{p['Parameters']['Prefix']}/{distributed.run_id_of(p['MapRunArn'])}"
            return {
                "MapRunArn": p["MapRunArn"],
                "ResultWriterDetails": {"Bucket": "out", "Key": f"{key}/manifest.json"},
            }
        return children(command)

    start = Start({"items": [1, 2], "prefix": "runs"}, state_machine_id=MACHINE)
    done = run_to_completion(machine, start.input, runner, env(), start=start)
    assert done.status == "SUCCEEDED"
    assert writes[0]["WriterConfig"] == {"Transformation": "NONE", "OutputType": "JSON"}
    assert done.output["ResultWriterDetails"]["Key"].endswith("/manifest.json")
    assert done.output["MapRunArn"] == writes[0]["MapRunArn"]


def test_writer_config_flatten_without_export() -> None:
    definition = dmap(
        ResultWriter={"WriterConfig": {"Transformation": "FLATTEN"}},
        processor={
            "StartAt": "Pair",
            "States": {
                "Pair": {
                    "Type": "Pass",
                    "Parameters": {"v.$": "States.Array($, $)"},
                    "OutputPath": "$.v",
                    "End": True,
                }
            },
        },
    )
    assert run_map(definition, [1, 2]).output == [1, 1, 2, 2]


def test_update_map_run_raises_concurrency_and_thresholds() -> None:
    machine = compile_machine(dmap(MaxConcurrency=1))
    step = advance(machine, None, Start([1, 2, 3], state_machine_id=MACHINE), env())
    arn = step.history[3].details["mapRunArn"]  # type: ignore[index]
    step = advance(machine, step.state, MapRunUpdated(arn, max_concurrency=3), env())
    assert [c.ref for c in step.commands if isinstance(c, ScheduleTask)] == [
        "M@1.0[1]",
        "M@1.0[2]",
    ]
    step = advance(machine, step.state, MapRunUpdated(arn, tolerated_failure_count=1), env())
    step = advance(machine, step.state, TaskFailed("M@1.0[0]", "States.TaskFailed"), env())
    assert step.status == "RUNNING"
    # lowering the threshold below the failures so far fails the run at once
    step = advance(machine, step.state, MapRunUpdated(arn, tolerated_failure_count=0), env())
    assert step.error == "States.ExceedToleratedFailureThreshold"
    assert not advance(machine, step.state, MapRunUpdated("arn:nope"), env()).history


def test_stop_aborts_the_map_run_and_cancels_children() -> None:
    machine = compile_machine(dmap())
    step = advance(machine, None, Start([1, 2], state_machine_id=MACHINE), env())
    step = advance(machine, step.state, Stop(), env())
    assert [h.type for h in step.history] == ["MapRunAborted", "ExecutionAborted"]
    assert sorted(c.ref for c in step.commands if isinstance(c, CancelTask)) == [
        "M@1.0[0]",
        "M@1.0[1]",
    ]


def test_empty_items_succeed_at_once() -> None:
    done = run_map(dmap(), [])
    assert done.output == []
    assert "MapRunSucceeded" in types(done)


def test_jsonata_distributed_map() -> None:
    definition = dmap(
        QueryLanguage="JSONata",
        Items="{% $states.input.xs %}",
        ItemSelector={"v": "{% $states.context.Map.Item.Value * 10 %}"},
        ToleratedFailureCount="{% $states.input.ok %}",
        ItemBatcher={"MaxItemsPerBatch": "{% 2 %}", "BatchInput": {"k": "{% 'x' %}"}},
    )
    done = run_map(definition, {"xs": [1, 2, 3], "ok": 0})
    assert done.output == [
        {"BatchInput": {"k": "x"}, "Items": [{"v": 10}, {"v": 20}]},
        {"BatchInput": {"k": "x"}, "Items": [{"v": 30}]},
    ]


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject"}}, "/States/M/ItemReader"),
        (
            {"ItemReader": {"Resource": "arn:aws:states:::s3:nope", "Parameters": {}}},
            "/States/M/ItemReader/Resource",
        ),
        ({"ItemBatcher": {}}, "/States/M/ItemBatcher"),
        ({"ToleratedFailurePercentage": 101}, "/States/M/ToleratedFailurePercentage"),
        ({"ToleratedFailureCount": 1, "ToleratedFailureCountPath": "$.x"}, "/States/M"),
        ({"Label": "has space"}, "/States/M/Label"),
        (
            {"ResultWriter": {"WriterConfig": {"OutputType": "XML"}}},
            "/States/M/ResultWriter/WriterConfig/OutputType",
        ),
    ],
)
def test_validation_of_distributed_fields(fields: dict[str, Any], location: str) -> None:
    found = [d for d in validate_definition(dmap(**fields)) if d.severity == "ERROR"]
    assert location in [d.location for d in found], found


def test_distributed_fields_in_an_inline_map_are_refused() -> None:
    definition = dmap(ToleratedFailureCount=1)
    definition["States"]["M"]["ItemProcessor"]["ProcessorConfig"] = {"Mode": "INLINE"}
    found = [d for d in validate_definition(definition) if d.severity == "ERROR"]
    assert [d.location for d in found] == ["/States/M/ToleratedFailureCount"]


def test_state_roundtrips_through_json_mid_run() -> None:
    machine = compile_machine(dmap(MaxConcurrency=1, ItemBatcher={"MaxItemsPerBatch": 2}))
    step = advance(machine, None, Start([1, 2, 3], state_machine_id=MACHINE), env())
    from app.workflows.asl import ExecutionState

    state = ExecutionState.from_json(step.state.to_json())
    step = advance(machine, state, TaskSucceeded("M@1.0[0]", {"Output": "[1,2]"}), Env.seeded(T0))
    assert [c.parameters["Input"] for c in step.commands if isinstance(c, ScheduleTask)] == [
        {"Items": [3]}
    ]


def test_the_state_keeps_each_map_runs_record() -> None:
    machine = compile_machine(dmap(MaxConcurrency=1, ToleratedFailurePercentage=50, Label="L"))
    step = advance(machine, None, Start([1, 2], state_machine_id=MACHINE), env())
    [(arn, record)] = step.state.map_runs.items()
    assert record == {
        "status": "RUNNING",
        "machine_arn": f"{MACHINE}/L",
        "execution_type": "STANDARD",
        "max_concurrency": 1,
        "tolerated_count": None,
        "tolerated_percentage": 50.0,
        "items": 2,
        "children": 2,
    }
    step = advance(machine, step.state, TaskSucceeded("M@1.0[0]", {"Output": "1"}), env())
    step = advance(machine, step.state, TaskSucceeded("M@1.0[1]", {"Output": "2"}), env())
    assert step.state.map_runs[arn]["status"] == "SUCCEEDED"
    assert step.output == [1, 2]


def test_an_express_runs_record_counts_its_children_as_they_start_and_end() -> None:
    """An EXPRESS run's children are not stored by the host, so DescribeMapRun's counts come
    from this record; a batch counts its items."""
    definition = dmap(
        execution_type="EXPRESS", MaxConcurrency=2, ItemBatcher={"MaxItemsPerBatch": 2}
    )
    machine = compile_machine(definition)
    step = advance(machine, None, Start([1, 2, 3, 4, 5], state_machine_id=MACHINE), env())
    [(arn, record)] = step.state.map_runs.items()
    assert (record["items"], record["children"]) == (5, 3)
    assert record["counts"] == {
        "items_started": 4,
        "items_succeeded": 0,
        "items_failed": 0,
        "executions_started": 2,
        "executions_succeeded": 0,
        "executions_failed": 0,
    }
    step = advance(machine, step.state, TaskSucceeded("M@1.0[0]", {"Output": "[]"}), env())
    described = json.dumps({"Status": "FAILED", "Error": "Boom"})
    failed = TaskFailed("M@1.0[1]", "States.TaskFailed", described)
    step = advance(machine, step.state, failed, env())
    assert step.state.status == "FAILED"  # no threshold: one failure fails the run
    assert step.state.map_runs[arn]["counts"] == {
        "items_started": 5,
        "items_succeeded": 2,
        "items_failed": 2,
        "executions_started": 3,
        "executions_succeeded": 1,
        "executions_failed": 1,
    }
    standard = compile_machine(dmap(MaxConcurrency=1))
    step = advance(standard, None, Start([1], state_machine_id=MACHINE), env())
    assert "counts" not in next(iter(step.state.map_runs.values()))  # its executions count


def test_host_refuses_what_it_cannot_run() -> None:
    from app.workflows.resources import check_definition

    reader = dmap(
        ItemReader={
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket": "b", "Key": "k"},
        }
    )
    machine = compile_machine(reader)
    [express] = check_definition(machine, "EXPRESS", "s3:*")
    assert "Express state machine does not support a Map state in DISTRIBUTED mode" in (
        express.message
    )
    [policy] = check_definition(machine, "STANDARD", "")
    assert policy.location == "/States/M/ItemReader/Resource"
    assert "SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW=s3:getObject" in policy.message
    assert check_definition(machine, "STANDARD", "s3:getObject") == []
    internal = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": distributed.ITERATION, "End": True}},
    }
    [refused] = check_definition(compile_machine(internal), "STANDARD", "")
    assert "is not supported" in refused.message
