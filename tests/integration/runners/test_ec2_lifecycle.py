"""GitLab Job Hooks through the real webhook, bus, workflows and worker to EC2 (moto's server):
one instance per pending job with our tags and user data, terminated when the job finishes,
whatever the duplicates and the order of the events."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.bus.models import Event
from app.db import utcnow
from app.runners.handlers import current_profiles
from app.runners.models import RunnerJobEvent
from app.runners.reconcile import reconcile
from app.runners.settings import load_runners_settings
from app.runners.transitions import runner_name
from tests.integration.runners.conftest import RunnerStack
from tests.integration.runners.payloads import INSTANCE, headers, job_hook, runner_block
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 60


def test_pending_job_starts_a_tagged_instance_and_success_terminates_it(
    runners: RunnerStack, job_id: int
) -> None:
    instance = runners.start(job_id)
    name = runner_name(INSTANCE, job_id)
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["smokehouse:job-id"] == str(job_id)
    assert tags["smokehouse:project-id"] == "380"
    assert tags["smokehouse:profile"] == "small"
    assert instance["InstanceType"] == "t3.small"
    assert instance.get("InstanceLifecycle") == "spot"  # spot first, as the profile asks
    user_data = base64.b64decode(
        runners.ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="userData"
        )["UserData"]["Value"]
    ).decode()
    [created] = [r for r in runners.gitlab.runners.values() if r["description"] == name]
    assert created["token"] in user_data  # the ephemeral runner's own token
    assert "--max-builds 1" in user_data
    assert runners.gitlab.url in user_data
    assert created["tag_list"] == ["aws"] or created["tag_list"] == "aws"

    running = runner_block(created["id"], name, ["aws"])
    assert runners.post(job_hook(job_id, "running", runner=running), headers()).status_code == 200
    assert runners.post(job_hook(job_id, "success", runner=running), headers()).status_code == 200
    wait_for(
        lambda: runners.instances(job_id, ("terminated", "shutting-down")),
        WAIT,
        what="the instance to be terminated",
    )
    wait_for(
        lambda: (r := runners.runner(job_id)) is not None and r.state == "terminated",
        WAIT,
        what="the runner to be recorded terminated",
    )
    wait_for(lambda: created["id"] not in runners.gitlab.runners, WAIT, what="runner deleted")
    job = runners.job(job_id)
    assert job is not None
    assert job.status == "success"
    assert job.phase == "finished"
    with runners.db.session() as session:
        timeline = session.scalars(
            select(RunnerJobEvent.status).where(RunnerJobEvent.job_pk == job.id)
        ).all()
    assert set(timeline) == {"pending", "assigned", "running", "success"}


def test_duplicate_pending_webhooks_start_exactly_one_instance(
    runners: RunnerStack, job_id: int
) -> None:
    payload = job_hook(job_id, "pending")
    retry = headers()
    first = runners.post(payload, retry)
    again = runners.post(payload, retry)  # GitLab retrying the same delivery
    assert first.json().get("eventId")
    assert again.json() == {"duplicate": True}
    # A burst at once: more retries of that delivery, and resends (new keys) of the same job.
    burst = [retry] * 8 + [headers() for _ in range(8)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda h: runners.post(payload, h), burst))
    assert all(a.status_code == 200 for a in answers)
    assert [a.json() for a in answers[:8]] == [{"duplicate": True}] * 8
    assert all(a.json().get("eventId") for a in answers[8:])
    runners.settle()
    assert len(runners.instances(job_id)) == 1
    with runners.db.session() as session:
        events = session.scalars(select(Event.envelope).where(Event.source == "gitlab")).all()
    mine = [e for e in events if e["detail"].get("build_id") == job_id]
    assert len(mine) == 1 + 8  # the first delivery once, and each resend once


def test_success_before_pending_never_starts_an_instance(runners: RunnerStack, job_id: int) -> None:
    assert runners.post(job_hook(job_id, "success"), headers()).status_code == 200
    runners.settle()
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200
    assert runners.post(job_hook(job_id, "running"), headers()).status_code == 200
    runners.settle()
    assert runners.instances(job_id, ("pending", "running", "terminated")) == []
    job = runners.job(job_id)
    assert job is not None
    assert job.status == "success"
    assert job.phase == "finished"


def test_finish_racing_the_launch_still_terminates_the_instance(
    runners: RunnerStack, job_id: int
) -> None:
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200
    assert runners.post(job_hook(job_id, "canceled"), headers()).status_code == 200
    runners.settle()
    assert runners.instances(job_id) == []  # none left running, whichever came first
    job = runners.job(job_id)
    assert job is not None
    assert job.status == "canceled"


def test_reconcile_terminates_the_instance_of_a_lost_finish_event(
    runners: RunnerStack, job_id: int
) -> None:
    instance = runners.start(job_id)
    settings = runners.stack.settings
    profiles = current_profiles(settings)
    # The job's success webhook never arrives: nothing changes until the profile's max lifetime.
    report = reconcile(settings, load_runners_settings(), profiles, ec2=runners.ec2)
    assert instance["InstanceId"] not in report.terminated
    later = utcnow() + timedelta(minutes=61)
    report = reconcile(settings, load_runners_settings(), profiles, now=later, ec2=runners.ec2)
    assert "max lifetime" in report.terminated[instance["InstanceId"]]
    assert runners.instances(job_id) == []
    runner = runners.runner(job_id)
    assert runner is not None
    assert runner.state == "terminated"


def test_stolen_job_terminates_the_instance_that_ran_it_and_reclaims_the_idle_one(
    runners: RunnerStack, job_id: int
) -> None:
    other = job_id + 10_000
    runners.gitlab.jobs[(380, other)] = {"id": other, "tag_list": ["aws"]}
    mine, theirs = runners.start(job_id), runners.start(other)
    # GitLab handed job_id to the runner started for `other`: job_id's finish names that runner.
    thief = runner_name(INSTANCE, other)
    [created] = [r for r in runners.gitlab.runners.values() if r["description"] == thief]
    ran = runner_block(created["id"], thief, ["aws"])
    assert runners.post(job_hook(job_id, "success", runner=ran), headers()).status_code == 200
    wait_for(lambda: runners.instances(other) == [], WAIT, what="the thief's instance to end")
    runners.settle()
    assert [i["InstanceId"] for i in runners.instances(job_id)] == [mine["InstanceId"]]
    settings = runners.stack.settings
    profiles = current_profiles(settings)
    idle_later = utcnow() + timedelta(minutes=11)
    report = reconcile(settings, load_runners_settings(), profiles, now=idle_later, ec2=runners.ec2)
    assert "idle" in report.terminated[mine["InstanceId"]]
    assert theirs["InstanceId"] not in report.terminated  # already gone


def test_bad_webhooks_are_refused_and_store_nothing(runners: RunnerStack) -> None:
    def events() -> int:
        with runners.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Event)) or 0)

    before = events()
    payload = job_hook(1, "pending")
    assert runners.post(payload, headers(token="wrong")).status_code == 401
    no_token = {k: v for k, v in headers().items() if k != "X-Gitlab-Token"}
    assert runners.post(payload, no_token).status_code == 401
    bad = runners.stack.url + "/webhooks/gitlab"
    import httpx

    response = httpx.post(bad, content=b"{not json", headers=headers(), timeout=10)
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]
    response = httpx.post(bad, json={"build_id": 1}, headers=headers(), timeout=10)
    assert response.status_code == 400
    assert "object_kind" in response.json()["detail"]
    big = {"object_kind": "build", "pad": "x" * (300 * 1024)}
    assert runners.post(big, headers()).status_code == 413
    assert events() == before


def test_a_start_that_failed_is_reported_then_retried_by_reconcile(
    runners: RunnerStack, job_id: int
) -> None:
    runners.gitlab.fail_only = "POST /api/v4/user/runners"  # the job checks and tags work
    runners.gitlab.fail_with, runners.gitlab.fail_times = 500, 1
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200
    runners.settle()
    job = runners.job(job_id)
    assert job is not None
    assert job.phase == "failed"
    assert "GitLab runner" in (job.error or "")
    assert runners.instances(job_id) == []
    runners.gitlab.fail_with, runners.gitlab.fail_only = None, None
    settings = runners.stack.settings
    report = reconcile(
        settings, load_runners_settings(), current_profiles(settings), ec2=runners.ec2
    )
    assert report.started >= 1
    wait_for(lambda: runners.instances(job_id), WAIT, what="the retried start")
    runners.settle()
    runner = runners.runner(job_id)
    assert runner is not None
    assert (runner.state, runner.attempt) == ("running", 2)
    assert len(runners.instances(job_id)) == 1


def test_jobs_for_tags_no_profile_has_get_no_runner(runners: RunnerStack, job_id: int) -> None:
    runners.gitlab.jobs[(380, job_id)] = {"id": job_id, "tag_list": ["gpu"]}
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200
    runners.settle()
    job = runners.job(job_id)
    assert job is not None
    assert (job.phase, job.tags) == ("unmatched", ["gpu"])
    assert runners.runner(job_id) is None
    assert runners.instances(job_id) == []


def test_running_before_pending_starts_nothing(runners: RunnerStack, job_id: int) -> None:
    elsewhere = runner_block(77, "someone-elses-runner", ["aws"])
    assert runners.post(job_hook(job_id, "running", runner=elsewhere), headers()).status_code == 200
    runners.settle()
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200
    runners.settle()
    job = runners.job(job_id)
    assert job is not None
    assert (job.status, job.ran_on) == ("running", "someone-elses-runner")
    assert runners.runner(job_id) is None
    assert runners.instances(job_id) == []


def test_an_ec2_error_fails_the_start_with_ec2s_reason(runners: RunnerStack, job_id: int) -> None:
    runners.gitlab.jobs[(380, job_id)] = {"id": job_id, "tag_list": ["broken"]}
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200
    runners.settle()
    job = runners.job(job_id)
    assert job is not None
    assert job.phase == "failed"
    assert "Ec2.Ec2Exception" in (job.error or "")
    assert "subnet-doesnotexist' does not exist" in (job.error or "")  # no capacity error
    runner = runners.runner(job_id)
    assert runner is not None
    assert (runner.state, runner.option) == ("failed", 0)
    wait_for(
        lambda: runner.gitlab_runner_id not in runners.gitlab.runners,
        WAIT,
        what="the GitLab runner of the failed start to be deleted",
    )


def test_a_pending_job_whose_webhook_was_lost_gets_its_runner_from_reconcile(
    runners: RunnerStack, job_id: int
) -> None:
    """GitLab has the job pending, no hook ever arrived (smokehouse was down, the network cut):
    reconcile asks GitLab for its projects' pending jobs and starts this one's runner, once.
    Before: reconcile only retried jobs it had recorded, so the job waited forever."""
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200  # project 380
    runners.settle()
    lost = job_id + 25_000
    runners.gitlab.jobs[(380, lost)] = {
        "id": lost,
        "name": "lost",
        "stage": "test",
        "status": "pending",
        "ref": "main",
        "created_at": "2026-11-26T16:00:00.000Z",
        "pipeline": {"id": 2366},
        "tag_list": ["aws"],
    }
    settings = runners.stack.settings
    profiles = current_profiles(settings)
    report = reconcile(settings, load_runners_settings(), profiles, ec2=runners.ec2)
    assert report.recovered == 1
    wait_for(lambda: runners.instances(lost), WAIT, what="the lost job's instance")
    runners.settle()
    again = reconcile(settings, load_runners_settings(), profiles, ec2=runners.ec2)
    assert again.recovered == 0  # recorded now: never a second runner
    runners.settle()
    assert len(runners.instances(lost)) == 1
    job = runners.job(lost)
    assert job is not None
    assert job.gitlab == INSTANCE  # recorded under the instance its project's hooks use
