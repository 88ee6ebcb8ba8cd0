"""A job's status only moves forward whatever order the webhooks come in; runner names trace a
runner back to its job; reconcile reclaims exactly what is no longer needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.runners.lifecycle import next_launch
from app.runners.profiles import (
    Ec2Profile,
    LaunchOption,
    client_token,
    launch_options,
    run_instances_params,
)
from app.runners.transitions import (
    RunnerView,
    is_terminal,
    job_facts,
    job_of_runner,
    next_status,
    rank,
    reclaim_reason,
    runner_name,
)
from tests.integration.runners.payloads import job_hook, runner_block

STATUSES = [
    "created",
    "pending",
    "running",
    "success",
    "failed",
    "canceled",
    "skipped",
    "manual",
    "preparing",
]


def test_forward_only() -> None:
    assert next_status(None, "pending") == "pending"
    assert next_status("pending", "running") == "running"
    assert next_status("running", "pending") == "running"  # a late pending changes nothing
    assert next_status("success", "running") == "success"
    assert next_status("success", "failed") == "success"  # the first terminal status sticks
    assert next_status("running", "canceled") == "canceled"


@given(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=8))
def test_any_order_ends_in_the_first_terminal_status(events: list[str]) -> None:
    status: str | None = None
    for event in events:
        status = next_status(status, event)
    terminal = [e for e in events if is_terminal(e)]
    if terminal:
        assert status == terminal[0]
    else:
        assert status is not None
        assert rank(status) == max(rank(e) for e in events)


@given(st.integers(1, 10**12), st.sampled_from(["https://gitlab.com", "http://gl.local:8080"]))
def test_runner_names_lead_back_to_their_job(job_id: int, gitlab: str) -> None:
    name = runner_name(gitlab, job_id)
    assert job_of_runner(name) == job_id
    assert len(name) <= 64
    assert runner_name("other", job_id) != name or gitlab == "other"


def test_foreign_runner_descriptions_are_not_ours() -> None:
    assert job_of_runner("shared-runners-manager-6.gitlab.com") is None
    assert job_of_runner(None) is None
    assert job_of_runner("smokehouse-12-xyz") is None


def test_job_facts_from_a_documented_job_hook() -> None:
    facts = job_facts(job_hook(1977, "running", runner=runner_block(380987, "shared-6", ["linux"])))
    assert (facts.job_id, facts.project_id, facts.status) == (1977, 380, "running")
    assert (facts.job_name, facts.stage, facts.pipeline_id) == ("test", "test", 2366)
    assert facts.project_path == "gitlab-org/gitlab-test"
    assert (facts.runner_id, facts.runner_description) == (380987, "shared-6")
    assert job_facts(job_hook(1, "pending")).runner_id is None


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"object_kind": "push"}, "object_kind"),
        ([], "object_kind"),
        ({**job_hook(1, "pending"), "build_id": "1"}, "build_id"),
        ({**job_hook(1, "pending"), "build_status": None}, "build_status"),
        ({**job_hook(1, "pending"), "project_id": True}, "project_id"),
    ],
)
def test_job_facts_refuse_what_is_not_a_job_hook(payload: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        job_facts(payload)


NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
IDLE, GRACE = timedelta(minutes=10), timedelta(minutes=15)


def view(**changes: Any) -> RunnerView:
    values: dict[str, Any] = {
        "name": "smokehouse-1-abcdef",
        "state": "running",
        "created_at": NOW - timedelta(minutes=30),
        "max_lifetime": timedelta(hours=2),
        "own_job_terminal": False,
        "own_job_finished_at": None,
        "running_live_job": False,
        "ran_own_job": False,
    }
    values.update(changes)
    return RunnerView(**values)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),  # waiting for / running its own job
        ({"state": None, "created_at": NOW - timedelta(minutes=5)}, None),  # just launched
        ({"state": None}, "unknown runner"),
        ({"created_at": NOW - timedelta(hours=3)}, "max lifetime"),
        ({"created_at": NOW - timedelta(hours=3), "running_live_job": True}, "max lifetime"),
        ({"state": "terminated"}, "runner is terminated"),
        ({"state": "failed"}, "runner is failed"),
        ({"own_job_terminal": True, "ran_own_job": True}, "its job finished"),
        # stolen: its job ran elsewhere; keep it while it may run another job, then reclaim
        ({"own_job_terminal": True, "own_job_finished_at": NOW - timedelta(minutes=5)}, None),
        ({"own_job_terminal": True, "own_job_finished_at": NOW - timedelta(minutes=11)}, "idle"),
        ({"own_job_terminal": True, "running_live_job": True}, None),
    ],
)
def test_reclaim_reason(changes: dict[str, Any], reason: str | None) -> None:
    found = reclaim_reason(view(**changes), NOW, idle=IDLE, grace=GRACE)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert reason in found


PROFILE = Ec2Profile.model_validate(
    {"kind": "ec2", "image_id": "ami-1", "instance_types": ["a", "b"], "spot": True}
)


def launch(option: LaunchOption) -> dict[str, Any]:
    return run_instances_params(
        PROFILE, option, token=client_token("r", 1, option), user_data="#!", tags={}
    )


def test_capacity_errors_move_to_on_demand_then_the_next_type() -> None:
    cause = "Ec2.Ec2Exception: There is no Spot capacity (InsufficientInstanceCapacity)"
    found = next_launch(launch(LaunchOption("a", "spot")), PROFILE, 0, cause, "r", 1)
    assert found is not None
    option, params = found
    assert option == 1
    assert params["InstanceType"] == "a"
    assert "InstanceMarketOptions" not in params
    assert params["ClientToken"] == client_token("r", 1, LaunchOption("a", "on-demand"))
    found = next_launch(params, PROFILE, 1, "SpotMaxPriceTooLow", "r", 1)
    assert found is not None
    assert found[1]["InstanceType"] == "b"
    assert found[1]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert next_launch(params, PROFILE, 3, "InsufficientInstanceCapacity", "r", 1) is None


@pytest.mark.parametrize(
    "message",
    [
        "We currently do not have sufficient t3.small capacity in the Availability Zone you "
        "requested (us-east-1a). Our system will be working on provisioning additional capacity.",
        "There is no Spot capacity available that matches your request.",
        "Your Spot request price of 0.001 is lower than the minimum required Spot request "
        "fulfillment price of 0.0035.",
        "Max spot instance count exceeded",
        "Your requested instance type (a) is not supported in your requested Availability Zone "
        "(us-east-1e).",
        "There are not enough free addresses in subnet 'subnet-1' to satisfy the requested "
        "number of instances.",
    ],
)
def test_ec2_capacity_messages_are_recognised(message: str) -> None:
    cause = f"Ec2.Ec2Exception: {message} (Service: Ec2, Status Code: 400, Request ID: r)"
    assert next_launch(launch(LaunchOption("a", "spot")), PROFILE, 0, cause, "r", 1) is not None


def test_other_errors_do_not_try_another_option() -> None:
    cause = "Ec2.Ec2Exception: The image id '[ami-1]' does not exist (InvalidAMIID.NotFound)"
    assert next_launch(launch(LaunchOption("a", "spot")), PROFILE, 0, cause, "r", 1) is None


def test_the_workflow_moves_to_the_next_subnet_then_on_demand_and_never_spot_for_a_retry() -> None:
    profile = Ec2Profile.model_validate(
        {**PROFILE.model_dump(), "instance_types": ["a"], "subnet_ids": ["s-1", "s-2"]}
    )
    first = launch_options(profile)[0]
    params = run_instances_params(
        profile, first, token=client_token("r", 1, first), user_data="#!", tags={}
    )
    cause = "Ec2.Ec2Exception: There are not enough free addresses in subnet 's-1'"
    moved = next_launch(params, profile, 0, cause, "r", 1)
    assert moved is not None
    assert (moved[1]["SubnetId"], moved[1]["InstanceMarketOptions"]["MarketType"]) == (
        "s-2",
        "spot",
    )
    then = next_launch(moved[1], profile, 1, "InsufficientInstanceCapacity", "r", 1)
    assert then is not None
    assert (then[1]["SubnetId"], "InstanceMarketOptions" in then[1]) == ("s-1", False)
    # a spot interruption's retry starts on demand and its fallback stays on demand
    retry = launch_options(profile, on_demand_only=True)
    assert [o.market for o in retry] == ["on-demand", "on-demand"]
    after = next_launch(params, profile, 0, cause, "r", 1, on_demand_only=True)
    assert after is not None
    assert "InstanceMarketOptions" not in after[1]
