"""The warm pool, spot interruptions and subnet fallback against moto's EC2 server and a real
HTTP fake GitLab, on SQLite and PostgreSQL, calling the pool pass and the workflows' handlers
in this process (the webhook → bus → workflow path is in test_pool_end_to_end.py).

Every test ends with :func:`no_orphans`: each instance of ours EC2 still runs belongs to a live
runner row, and no job has two runners."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import yaml
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason
from sqlalchemy import func, select

from app.config import Settings
from app.db import Database, get_database, utcnow
from app.handlers import HandlerContext
from app.runners import handlers
from app.runners.interruptions import interrupted
from app.runners.models import LIVE_RUNNER_STATES, Runner, RunnerJob, RunnerJobEvent
from app.runners.pool import POOL_TAG, maintain, needed
from app.runners.profiles import Profiles, parse_profiles
from app.runners.reconcile import reconcile
from app.runners.settings import load_runners_settings
from tests.integration.runners.ec2_faults import Ec2Faults
from tests.integration.runners.fake_gitlab import FakeGitLab
from tests.integration.runners.payloads import INSTANCE, job_hook, runner_block

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MONDAY_OFFICE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
MONDAY_EVENING = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)  # 20:00 in Berlin


def profile(**pool: Any) -> dict[str, Any]:
    return {
        "kind": "ec2",
        "tags": ["warm"],
        "image_id": "ami-12345678",
        "instance_types": ["t3.small"],
        "max_concurrent": 6,
        "pool": pool,
        "prices": {"t3.small": {"on_demand": 0.02, "spot": 0.008}},
    }


@dataclass
class Fleet:
    settings: Settings
    gitlab: FakeGitLab
    ec2: Any
    refills: list[int]
    jobs: Iterator[int]

    @property
    def db(self) -> Database:
        return get_database(self.settings.sqlalchemy_url)

    def context(self) -> HandlerContext:
        return HandlerContext("test", f"inv-{next(self.jobs)}", settings=self.settings)

    def event(
        self, job_id: int, status: str, runner: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        detail = job_hook(job_id, status, runner=runner)
        self.gitlab.hook(detail)
        return {"id": f"ev-{job_id}-{status}", "resources": [INSTANCE], "detail": detail}

    def new_job(self, tags: list[str]) -> int:
        job_id = next(self.jobs)
        self.gitlab.jobs[(380, job_id)] = {
            "id": job_id,
            "name": "test",
            "status": "pending",
            "tag_list": tags,
            "pipeline": {"id": 1, "project_id": 380},
        }
        return job_id

    def pending(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = handlers.plan_start(self.event(job_id, "pending"), self.context())
        return result

    def finish(self, job_id: int, runner: Runner, status: str = "success") -> dict[str, Any]:
        """What gitlab-stop-runner does: plan, terminate, record the stop."""
        block = runner_block(runner.gitlab_runner_id or 0, runner.name, ["warm"])
        plan: dict[str, Any] = handlers.plan_stop(self.event(job_id, status, block), self.context())
        if plan["terminate"]:
            self.ec2.terminate_instances(InstanceIds=plan["InstanceIds"])
        handlers.stopped({"runners": plan["runners"]}, self.context())
        return plan

    def running(self, job_id: int, runner: Runner) -> None:
        block = runner_block(runner.gitlab_runner_id or 0, runner.name, ["warm"])
        handlers.record_job(self.event(job_id, "running", block), self.context())

    def rows(self, **where: Any) -> list[Runner]:
        with self.db.session() as session:
            query = select(Runner)
            for key, value in where.items():
                query = query.where(getattr(Runner, key) == value)
            return list(session.scalars(query.order_by(Runner.created_at, Runner.name)))

    def job(self, job_id: int) -> RunnerJob:
        with self.db.session() as session:
            found = session.scalar(select(RunnerJob).where(RunnerJob.job_id == job_id))
            assert found is not None
            return found

    def timeline(self, job_id: int) -> list[str]:
        job = self.job(job_id)
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(RunnerJobEvent.status)
                    .where(RunnerJobEvent.job_pk == job.id)
                    .order_by(RunnerJobEvent.at, RunnerJobEvent.id)
                )
            )

    def instance(self, instance_id: str) -> dict[str, Any]:
        found = self.ec2.describe_instances(InstanceIds=[instance_id])
        instance: dict[str, Any] = found["Reservations"][0]["Instances"][0]
        return instance

    def pool(self, profiles: Profiles, now: datetime | None = None) -> Any:
        return maintain(self.settings, profiles, now, ec2=self.ec2)

    def no_orphans(self) -> None:
        """Every live instance of ours has a live runner row; no job has two runners."""
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag-key", "Values": ["smokehouse:runner"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        running = {
            i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]
        }
        with self.db.session() as session:
            live = set(
                session.scalars(
                    select(Runner.provider_id).where(Runner.state.in_(LIVE_RUNNER_STATES))
                )
            )
            doubled = session.execute(
                select(Runner.job_pk, func.count())
                .where(Runner.job_pk.is_not(None))
                .group_by(Runner.job_pk)
                .having(func.count() > 1)
            ).all()
        assert running <= live, f"orphans: {running - live}"
        assert doubled == []


@pytest.fixture
def fleet(
    settings_factory: Callable[..., Settings],
    database_url: str,
    moto_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    with FakeGitLab() as gitlab:
        gitlab.projects[380] = {"id": 380, "path_with_namespace": "gitlab-org/gitlab-test"}
        monkeypatch.setenv("SMOKEHOUSE_GITLAB_URL", gitlab.url)
        monkeypatch.setenv("SMOKEHOUSE_GITLAB_API_TOKEN", gitlab.token)
        refills: list[int] = []
        monkeypatch.setattr(handlers, "refill_pool", lambda settings: refills.append(1))
        settings = settings_factory(database_url=database_url)
        ec2 = boto3.client("ec2")
        # every test starts from an EC2 without runners of ours (moto is shared by the session)
        ours = [
            i["InstanceId"]
            for r in ec2.describe_instances(
                Filters=[{"Name": "tag-key", "Values": ["smokehouse:runner"]}]
            )["Reservations"]
            for i in r["Instances"]
        ]
        if ours:
            ec2.terminate_instances(InstanceIds=ours)
        yield Fleet(settings, gitlab, ec2, refills, iter(range(70_000, 80_000)))


def use(fleet: Fleet, tmp_path: Any, profiles: dict[str, Any]) -> Profiles:
    """Write the profiles file the handlers read, and return what it says."""
    path = tmp_path / "runners.yaml"
    path.write_text(yaml.safe_dump(profiles))
    fleet.settings = fleet.settings.model_copy(
        update={"runners": fleet.settings.runners.model_copy(update={"profiles_file": path})}
    )
    return parse_profiles(profiles, str(path))


def test_a_pending_job_is_served_from_the_pool_and_the_pool_refilled(
    fleet: Fleet, tmp_path: Any
) -> None:
    profiles = use(fleet, tmp_path, {"profiles": {"warm": profile(idle_count=2)}})
    report = fleet.pool(profiles)
    assert len(report.launched) == 2, report
    assert fleet.pool(profiles).launched == []  # a second pass finds the pool full
    idle = fleet.rows(state="idle")
    assert [r.pool for r in idle] == [True, True]
    for runner in idle:  # launched and registered ahead of any job
        instance = fleet.instance(str(runner.provider_id))
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert (tags["smokehouse:runner"], tags[POOL_TAG]) == (runner.name, "warm")
        user_data = base64.b64decode(
            fleet.ec2.describe_instance_attribute(
                InstanceId=instance["InstanceId"], Attribute="userData"
            )["UserData"]["Value"]
        ).decode()
        registered = fleet.gitlab.runners[runner.gitlab_runner_id or 0]
        assert registered["description"] == runner.name
        assert registered["tag_list"] in (["warm"], "warm")
        assert registered["token"] in user_data
        assert "--max-builds 1" in user_data
    job_id = fleet.new_job(["warm"])
    assigned = fleet.pending(job_id)
    assert assigned["action"] == "assigned"
    assert assigned["runner"] == idle[0].name  # the longest idle
    assert fleet.refills == [1]  # a refill was asked for at once
    assert fleet.job(job_id).phase == "assigned"
    assert fleet.timeline(job_id) == ["pending", "assigned"]
    assert fleet.pending(job_id)["action"] == "skip"  # a duplicate hook takes nothing more
    refill = fleet.pool(profiles)
    assert len(refill.launched) == 1
    assert len(fleet.rows(state="idle")) == 2
    fleet.running(job_id, idle[0])
    fleet.finish(job_id, idle[0])
    assert fleet.instance(str(idle[0].provider_id))["State"]["Name"] in (
        "shutting-down",
        "terminated",
    )  # max_use 1: stopped after its one job
    [gone] = fleet.rows(name=idle[0].name)
    assert (gone.state, gone.uses) == ("terminated", 1)
    assert gone.gitlab_runner_id not in fleet.gitlab.runners
    assert fleet.timeline(job_id) == ["pending", "assigned", "running", "success"]
    fleet.no_orphans()


def test_max_use_lets_a_runner_take_that_many_jobs_then_replaces_it(
    fleet: Fleet, tmp_path: Any
) -> None:
    profiles = use(fleet, tmp_path, {"profiles": {"warm": profile(idle_count=1, max_use=2)}})
    fleet.pool(profiles)
    [runner] = fleet.rows(state="idle")
    user_data = base64.b64decode(
        fleet.ec2.describe_instance_attribute(
            InstanceId=str(runner.provider_id), Attribute="userData"
        )["UserData"]["Value"]
    ).decode()
    assert "--max-builds 2" in user_data
    first = fleet.new_job(["warm"])
    assert fleet.pending(first)["runner"] == runner.name
    fleet.running(first, runner)
    assert fleet.finish(first, runner)["runners"] == []  # back to the pool, not stopped
    [back] = fleet.rows(name=runner.name)
    assert (back.state, back.uses, back.job_pk) == ("idle", 1, None)
    fleet.finish(first, runner)  # a redelivered finish counts nothing twice
    assert fleet.rows(name=runner.name)[0].uses == 1
    second = fleet.new_job(["warm"])
    assert fleet.pending(second)["runner"] == runner.name
    fleet.running(second, runner)
    assert fleet.finish(second, runner)["runners"] == [runner.name]  # used up
    [done] = fleet.rows(name=runner.name)
    assert (done.state, done.uses) == ("terminated", 2)
    assert len(fleet.pool(profiles).launched) == 1  # replaced
    fleet.no_orphans()


def test_a_job_another_pool_runner_took_swaps_the_bindings(fleet: Fleet, tmp_path: Any) -> None:
    """GitLab gives a job to whichever matching runner asks first: the bindings follow it."""
    profiles = use(fleet, tmp_path, {"profiles": {"warm": profile(idle_count=2)}})
    fleet.pool(profiles)
    one, two = fleet.rows(state="idle")
    first, second = fleet.new_job(["warm"]), fleet.new_job(["warm"])
    assert fleet.pending(first)["runner"] == one.name
    assert fleet.pending(second)["runner"] == two.name
    fleet.running(first, two)  # GitLab handed job 1 to runner two
    assert {r.name: r.job_pk for r in fleet.rows(pool=True)} == {
        one.name: fleet.job(second).id,
        two.name: fleet.job(first).id,
    }
    fleet.running(second, one)
    fleet.finish(first, two)
    fleet.finish(second, one)
    assert {r.state for r in fleet.rows(pool=True)} == {"terminated"}
    fleet.no_orphans()


def test_a_canceled_job_gives_its_unused_runner_back_to_the_pool(
    fleet: Fleet, tmp_path: Any
) -> None:
    profiles = use(fleet, tmp_path, {"profiles": {"warm": profile(idle_count=1)}})
    fleet.pool(profiles)
    [runner] = fleet.rows(state="idle")
    job_id = fleet.new_job(["warm"])
    fleet.pending(job_id)
    plan = handlers.plan_stop(fleet.event(job_id, "canceled"), fleet.context())
    assert plan["runners"] == []
    [back] = fleet.rows(name=runner.name)
    assert (back.state, back.job_pk, back.uses) == ("idle", None, 0)
    fleet.no_orphans()


def test_surplus_is_stopped_after_idle_time_and_a_schedule_sizes_the_pool(
    fleet: Fleet, tmp_path: Any
) -> None:
    office_hours = {
        "periods": ["* 8-18 * * mon-fri"],
        "timezone": "Europe/Berlin",
        "idle_count": 3,
        "idle_time": "5m",
    }
    profiles = use(
        fleet,
        tmp_path,
        {"profiles": {"warm": profile(idle_count=1, idle_time="10m", schedule=[office_hours])}},
    )
    assert len(fleet.pool(profiles, MONDAY_OFFICE).launched) == 3  # working hours in Berlin
    launched = fleet.rows(state="idle")
    evening = fleet.pool(profiles, MONDAY_EVENING)  # after hours: back to 1
    assert len(evening.stopped) == 2
    assert [r.name for r in fleet.rows(state="idle")] == [launched[2].name]  # newest kept
    for runner in launched[:2]:
        assert fleet.instance(str(runner.provider_id))["State"]["Name"] in (
            "shutting-down",
            "terminated",
        )
        assert runner.gitlab_runner_id not in fleet.gitlab.runners
    # the surplus is stopped only once it has been idle idle_time
    fewer = use(fleet, tmp_path, {"profiles": {"warm": profile(idle_count=0, idle_time="10m")}})
    assert fleet.pool(fewer, utcnow() + timedelta(minutes=1)).stopped == []
    assert len(fleet.pool(fewer, utcnow() + timedelta(minutes=11)).stopped) == 1
    assert fleet.rows(state="idle") == []
    fleet.no_orphans()


def test_a_profile_that_loses_its_pool_stops_its_idle_runners(fleet: Fleet, tmp_path: Any) -> None:
    without = use(fleet, tmp_path, {"profiles": {}})
    assert not needed(fleet.settings, without)  # no pool, no pool runner: reconcile sends no pass
    profiles = use(fleet, tmp_path, {"profiles": {"warm": profile(idle_count=2)}})
    assert needed(fleet.settings, profiles)
    fleet.pool(profiles)
    without = use(fleet, tmp_path, {"profiles": {}})
    assert needed(fleet.settings, without)  # its runners are still up: a pass must stop them
    assert len(fleet.pool(without).stopped) == 2
    fleet.no_orphans()


def test_subnet_fallback_moves_on_after_a_capacity_or_address_error(
    fleet: Fleet, tmp_path: Any, moto_env: dict[str, str]
) -> None:
    vpc = fleet.ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    full, spare = (
        fleet.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{n}.0/24", AvailabilityZone=zone)[
            "Subnet"
        ]["SubnetId"]
        for n, zone in ((1, "us-east-1a"), (2, "us-east-1b"))
    )
    spec = {**profile(idle_count=1), "subnet_ids": [full, spare], "spot": True}
    profiles = use(fleet, tmp_path, {"profiles": {"warm": spec}})
    with Ec2Faults(moto_env["AWS_ENDPOINT_URL"]) as faults:
        faults.refuse[full] = (
            "InsufficientFreeAddressesInSubnet",
            f"There are not enough free addresses in subnet '{full}' to satisfy the requested "
            "number of instances.",
        )
        ec2 = boto3.client("ec2", endpoint_url=faults.url)
        report = maintain(fleet.settings, profiles, ec2=ec2)
        assert faults.refused == [full]  # spot in the full subnet, then spot in the next one
    assert len(report.launched) == 1, report
    [runner] = fleet.rows(state="idle")
    assert (runner.subnet_id, runner.market) == (spare, "spot")
    assert fleet.instance(str(runner.provider_id))["SubnetId"] == spare
    fleet.no_orphans()


def test_an_error_no_other_subnet_avoids_fails_the_launch(
    fleet: Fleet, tmp_path: Any, moto_env: dict[str, str]
) -> None:
    profiles = use(fleet, tmp_path, {"profiles": {"warm": profile(idle_count=1)}})
    with Ec2Faults(moto_env["AWS_ENDPOINT_URL"]) as faults:
        faults.refuse["t3.small"] = ("UnauthorizedOperation", "You are not authorized.")
        report = maintain(
            fleet.settings, profiles, ec2=boto3.client("ec2", endpoint_url=faults.url)
        )
    assert report.launched == []
    assert "UnauthorizedOperation" in report.errors[0]
    [failed] = fleet.rows(pool=True)
    assert failed.state == "failed"
    assert failed.gitlab_runner_id not in fleet.gitlab.runners  # its registration is gone too
    fleet.no_orphans()


def spot_job(fleet: Fleet, tmp_path: Any) -> tuple[int, Runner]:
    """A job running on a cold spot runner."""
    spec = {**profile(), "spot": True}
    spec.pop("pool")
    use(fleet, tmp_path, {"profiles": {"warm": spec}})
    job_id = fleet.new_job(["warm"])
    plan = fleet.pending(job_id)
    assert plan["launch"]["InstanceMarketOptions"]["MarketType"] == "spot"
    answer = fleet.ec2.run_instances(**plan["launch"])["Instances"][0]
    handlers.launched(
        {"runner": plan["runner"], "instance": answer, "launch": plan["launch"]}, fleet.context()
    )
    [runner] = fleet.rows(name=plan["runner"])
    fleet.running(job_id, runner)
    return job_id, runner


def retried_on_demand(fleet: Fleet, job_id: int, runner: Runner) -> int:
    job = fleet.job(job_id)
    assert fleet.timeline(job_id)[-2:] == ["interrupted", "retried"]
    assert fleet.gitlab.count("POST", f"/api/v4/projects/380/jobs/{job_id}/cancel") == 1
    assert fleet.gitlab.count("POST", f"/api/v4/projects/380/jobs/{job_id}/retry") == 1
    assert job.error is not None
    assert "interrupted" in job.error
    with fleet.db.session() as session:
        retry = session.scalar(select(RunnerJob).where(RunnerJob.retry_of == job_id))
        assert retry is not None
        assert retry.on_demand
        new_id = retry.job_id
    assert fleet.gitlab.jobs[(380, new_id)]["status"] == "pending"
    plan = fleet.pending(new_id)  # what the started workflow (or its own hook) does
    assert plan["action"] == "ec2"
    assert "InstanceMarketOptions" not in plan["launch"]  # on demand
    return new_id


def test_a_spot_interruption_warning_retries_the_job_on_demand(
    fleet: Fleet, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr("app.runners.reconcile.start_again", lambda s, jobs: started.extend(jobs))
    job_id, runner = spot_job(fleet, tmp_path)
    warning = {
        "source": "aws.ec2",
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "detail": {"instance-id": runner.provider_id, "instance-action": "terminate"},
    }
    answer = handlers.spot_interrupted(warning, fleet.context())
    again = handlers.spot_interrupted(warning, fleet.context())  # delivered twice
    assert answer["job"] == again["job"] == job_id  # GitLab's job id, both times
    assert answer["retried"] is not None
    assert again["retried"] is None  # absorbed: GitLab was asked once
    new_id = retried_on_demand(fleet, job_id, runner)
    assert started[0][2]["build_id"] == new_id  # the retry was started at once


def test_reconcile_finds_a_spot_reclaimed_instance_and_retries_its_job(
    fleet: Fleet, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.runners.reconcile.start_again", lambda s, jobs: len(list(jobs)))
    job_id, runner = spot_job(fleet, tmp_path)
    fleet.ec2.terminate_instances(InstanceIds=[str(runner.provider_id)])
    # EC2 took the capacity back: moto cannot, so its instance is given AWS's reason by hand
    instance = ec2_backends["123456789012"]["us-east-1"].get_instance(runner.provider_id)
    instance.state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination",
        "Server.SpotInstanceTermination",
    )
    profiles = use(fleet, tmp_path, {"profiles": {"warm": {**profile(), "pool": None}}})
    report = reconcile(fleet.settings, load_runners_settings(), profiles, ec2=fleet.ec2)
    assert report.interrupted == [runner.provider_id]
    retried_on_demand(fleet, job_id, runner)
    assert (
        reconcile(fleet.settings, load_runners_settings(), profiles, ec2=fleet.ec2).interrupted
        == []
    )


def test_an_interruption_of_an_instance_we_do_not_know_changes_nothing(fleet: Fleet) -> None:
    assert interrupted(fleet.settings, "i-0123456789abcdef0") == {
        "handled": False,
        "reason": "not one of our runners",
    }
