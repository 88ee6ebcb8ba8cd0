"""Lost hooks, found again by reconcile through GitLab's API (a real HTTP fake GitLab, moto's
EC2, the real webhook, bus, workflows and worker): a lost finish stops its runner in the next
pass instead of at the profile's max lifetime (an orphan instance for up to an hour), a job
deleted from GitLab stops its runner, a late real hook then changes nothing twice, and a
recovery execution that failed does not block a lost pending job for good."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from app.runners.handlers import current_profiles
from app.runners.models import RunnerJobEvent
from app.runners.reconcile import ReconcileReport, reconcile
from app.runners.settings import load_runners_settings
from app.runners.transitions import runner_name
from tests.integration.runners.conftest import RunnerStack
from tests.integration.runners.payloads import INSTANCE, headers, job_hook, runner_block
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 60
START = "arn:aws:states:us-east-1:000000000000:stateMachine:gitlab-start-runner"


def _pass(runners: RunnerStack) -> ReconcileReport:
    settings = runners.stack.settings
    return reconcile(settings, load_runners_settings(), current_profiles(settings), ec2=runners.ec2)


def _timeline(runners: RunnerStack, job_id: int) -> list[str]:
    job = runners.job(job_id)
    assert job is not None
    with runners.db.session() as session:
        return list(
            session.scalars(select(RunnerJobEvent.status).where(RunnerJobEvent.job_pk == job.id))
        )


def test_a_lost_success_hook_stops_the_runner_in_the_next_pass_and_the_late_hook_does_nothing(
    runners: RunnerStack, job_id: int
) -> None:
    """Before: nothing asked GitLab about a running job, so its instance (and its GitLab runner)
    stayed up until the profile's max lifetime: an orphan."""
    instance = runners.start(job_id)
    name = runner_name(INSTANCE, job_id)
    [created] = [r for r in runners.gitlab.runners.values() if r["description"] == name]
    ran = runner_block(created["id"], name, ["aws"])
    # GitLab ran the job on our runner and finished it; both hooks were lost on the way.
    runners.gitlab.hook(job_hook(job_id, "running", runner=ran))
    runners.gitlab.hook(job_hook(job_id, "success", runner=ran))

    report = _pass(runners)
    assert report.finished == [job_id]
    assert instance["InstanceId"] in report.terminated
    assert runners.instances(job_id) == []
    runner = runners.runner(job_id)
    assert runner is not None
    assert runner.state == "terminated"
    assert created["id"] not in runners.gitlab.runners  # the registration went with it
    job = runners.job(job_id)
    assert job is not None
    assert (job.status, job.phase, job.ran_on) == ("success", "finished", name)

    # The real hooks arrive late after all: recorded once, nothing started or stopped again.
    assert runners.post(job_hook(job_id, "success", runner=ran), headers()).status_code == 200
    runners.settle()
    assert sorted(_timeline(runners, job_id)) == ["assigned", "pending", "success"]
    assert runners.instances(job_id) == []
    again = _pass(runners)
    assert job_id not in again.finished
    assert instance["InstanceId"] not in again.terminated


def test_a_job_deleted_from_gitlab_stops_its_runner(runners: RunnerStack, job_id: int) -> None:
    """The pipeline was deleted while the job waited for its runner: GitLab answers 404 for the
    job (its project still there), no hook ever comes. Before: the instance lived an hour."""
    instance = runners.start(job_id)
    with runners.gitlab.lock:
        del runners.gitlab.jobs[(380, job_id)]
    report = _pass(runners)
    assert report.finished == [job_id]
    assert instance["InstanceId"] in report.terminated
    assert runners.instances(job_id) == []
    job = runners.job(job_id)
    assert job is not None
    assert (job.status, job.phase) == ("canceled", "finished")


def test_a_job_gitlab_still_runs_is_left_alone(runners: RunnerStack, job_id: int) -> None:
    instance = runners.start(job_id)
    name = runner_name(INSTANCE, job_id)
    [created] = [r for r in runners.gitlab.runners.values() if r["description"] == name]
    runners.gitlab.hook(job_hook(job_id, "running", runner=runner_block(created["id"], name)))
    report = _pass(runners)
    assert job_id not in report.finished
    assert instance["InstanceId"] not in report.terminated
    assert [i["InstanceId"] for i in runners.instances(job_id)] == [instance["InstanceId"]]


def test_a_failed_recovery_execution_does_not_block_the_lost_job_for_good(
    runners: RunnerStack, job_id: int
) -> None:
    """``recover-<job id>`` ran and FAILED before it recorded the job (a worker crash, a bad
    moment): before, every later pass hit ExecutionAlreadyExists and the job waited forever."""
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200  # project 380
    runners.settle()
    lost = job_id + 35_000
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
    sfn = runners.stack.client()
    broken = sfn.start_execution(
        stateMachineArn=START,
        name=f"recover-{lost}",
        input=json.dumps({"detail": {"object_kind": "not a job"}}),
    )["executionArn"]
    wait_for(
        lambda: sfn.describe_execution(executionArn=broken)["status"] == "FAILED",
        WAIT,
        what="the first recovery execution to fail",
    )
    report = _pass(runners)
    assert report.recovered == 1
    wait_for(lambda: runners.instances(lost), WAIT, what="the lost job's instance")
    runners.settle()
    again = _pass(runners)
    assert again.recovered == 0
    runners.settle()
    assert len(runners.instances(lost)) == 1


def test_a_recovered_job_of_a_watched_project_and_its_late_hook_share_one_runner(
    runners: RunnerStack, job_id: int
) -> None:
    """A project only watched (SMOKEHOUSE_GITLAB_WATCH, no job of it seen yet): its lost pending
    job is recovered, then GitLab's hook arrives late after all. Before: the recovered job was
    recorded under the API's URL, the hook under its X-Gitlab-Instance -- two job rows, two
    instances for one job."""
    lost = job_id + 45_000
    project, path = 200_000 + lost, f"acme/watched-{lost}"  # never seen before, even on a rerun
    runners.gitlab.projects[project] = {"id": project, "path_with_namespace": path}
    runners.gitlab.jobs[(project, lost)] = {
        "id": lost,
        "name": "watched",
        "stage": "test",
        "status": "pending",
        "ref": "main",
        "created_at": "2026-11-26T16:00:00.000Z",
        "pipeline": {"id": 2367, "project_id": project},
        "tag_list": ["aws"],
    }
    settings = runners.stack.settings
    watching = settings.model_copy(
        update={"gitlab": settings.gitlab.model_copy(update={"watch": f"project:{project}"})}
    )
    report = reconcile(
        watching, load_runners_settings(), current_profiles(settings), ec2=runners.ec2
    )
    assert report.recovered == 1
    wait_for(lambda: runners.instances(lost), WAIT, what="the recovered job's instance")
    runners.settle()
    late = job_hook(lost, "pending", project_id=project, pipeline_id=2367)
    late["project_name"] = path
    late["project"]["path_with_namespace"] = path
    assert runners.post(late, headers()).status_code == 200
    runners.settle()
    assert len(runners.instances(lost)) == 1
    job = runners.job(lost)  # looked up under the hooks' instance
    assert job is not None
    assert job.phase in ("launching", "running")


def test_a_gitlab_that_is_away_costs_one_question_per_pass_not_one_per_job(
    runners: RunnerStack, job_id: int
) -> None:
    """Every live runner's job is asked about; with GitLab down each question would wait for
    its timeout and retry, so a pass over many runners would outlast its 60 s interval."""
    other = job_id + 20_001
    runners.gitlab.jobs[(380, other)] = {"id": other, "name": "test", "tag_list": ["aws"]}
    first, second = runners.start(job_id), runners.start(other)
    # Only this test's jobs: the session's worker may be asking about other tests' jobs meanwhile.
    job_paths = re.compile(rf"^/api/v4/projects/\d+/jobs/({job_id}|{other})$")

    def asked() -> int:
        with runners.gitlab.lock:
            return sum(1 for m, p in runners.gitlab.requests if m == "GET" and job_paths.match(p))

    before = asked()
    runners.gitlab.fail_with = 503
    try:
        report = _pass(runners)
    finally:
        runners.gitlab.fail_with = None
    # One question (and its one retry) ends the round: at most one of these two jobs is asked
    # about (which one first depends on the session's other live runners); before, both were.
    assert asked() - before <= 2
    # The outage is reported when the pass asked anything (under CI load this session's rows may
    # still be starting, and then nothing is asked: the bound above is what this test is for).
    assert all("status of job" in e for e in report.errors if e.startswith("gitlab"))
    assert report.terminated == {}
    assert {first["InstanceId"], second["InstanceId"]} <= {
        i["InstanceId"] for i in runners.instances(job_id) + runners.instances(other)
    }
