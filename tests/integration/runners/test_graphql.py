"""GraphQL over the runners domain: a job with its timeline and runner (state, cost hint), the
profiles, and terminating a runner by hand (admins only)."""

from __future__ import annotations

import pytest

from tests.integration.runners.conftest import VIEWER_SECRET, RunnerStack
from tests.integration.runners.payloads import INSTANCE
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = """
query($jobId: Int!) {
  ciJob(jobId: $jobId) {
    gitlab jobId projectId project name status phase profile tags tagsSource
    timeline { status at runner }
    secondsToAssigned queueSeconds onDemand retryOf
    runner {
      name kind state providerId instanceType market runningMinutes costHint estimatedCost pool
    }
  }
}
"""
TERMINATE = "mutation($name: String!) { terminateRunner(name: $name) { name state } }"


def test_a_job_shows_its_timeline_runner_and_cost_hint(runners: RunnerStack, job_id: int) -> None:
    instance = runners.start(job_id)
    job = runners.graphql(JOB, jobId=job_id)["data"]["ciJob"]
    assert job["gitlab"] == INSTANCE
    assert job["project"] == "gitlab-org/gitlab-test"
    assert (job["status"], job["phase"], job["profile"]) == ("pending", "running", "small")
    assert (job["tags"], job["tagsSource"]) == (["aws"], "gitlab")
    runner = job["runner"]
    # pending → a runner assigned (a cold one: when its instance is recorded) → still queued
    assert [(e["status"], e["runner"]) for e in job["timeline"]] == [
        ("pending", None),
        ("assigned", runner["name"]),
    ]
    assert 0 < job["secondsToAssigned"] <= job["queueSeconds"]
    assert (job["onDemand"], job["retryOf"]) == (False, None)
    assert runner["kind"] == "ec2"
    assert runner["state"] == "running"
    assert runner["pool"] is False
    assert runner["providerId"] == instance["InstanceId"]
    assert runner["costHint"].startswith("t3.small spot, ")
    assert runner["estimatedCost"] >= 0  # running hours times the profile's spot price

    profiles = runners.graphql(
        "{ runnerProfiles { name kind default tags live jobs estimatedCost pool { idleCount }"
        " queueTime { le count } } }"
    )
    by_name = {p["name"]: p for p in profiles["data"]["runnerProfiles"]}
    assert by_name["small"]["default"] is True
    assert by_name["small"]["live"] >= 1
    assert by_name["small"]["jobs"] >= 1
    assert by_name["small"]["estimatedCost"] >= 0
    assert by_name["small"]["pool"] is None
    assert by_name["small"]["queueTime"][-1]["le"] is None  # +Inf last
    assert by_name["big"]["estimatedCost"] is None  # no price table
    assert by_name["big"]["tags"] == ["aws", "big"]

    listed = runners.graphql(
        "{ ciJobs(limit: 500) { jobId } ciRunners { name state } }", VIEWER_SECRET
    )["data"]
    assert job_id in [j["jobId"] for j in listed["ciJobs"]]
    assert {"name": runner["name"], "state": "running"} in listed["ciRunners"]

    denied = runners.graphql(TERMINATE, VIEWER_SECRET, name=runner["name"])
    assert denied["errors"][0]["message"] == "This API key is read-only (role viewer)"
    assert runners.instances(job_id)  # still running

    done = runners.graphql(TERMINATE, name=runner["name"])["data"]["terminateRunner"]
    assert done == {"name": runner["name"], "state": "terminated"}
    wait_for(lambda: not runners.instances(job_id), 10, what="the instance to terminate")
    gone = runners.graphql("{ ciRunners(includeStopped: true) { name state } }")["data"]
    assert {"name": runner["name"], "state": "terminated"} in gone["ciRunners"]
    unknown = runners.graphql(TERMINATE, name="smokehouse-1-000000")
    assert "no runner named" in unknown["errors"][0]["message"]
