"""A runner stack per mode: the app and a real worker (tests/integration/workflows/stack.py), a
moto server standing in for EC2, and a FakeGitLab for the job-tag lookup and runner creation."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import func, select

from app.bus.models import Delivery
from app.db import Database, get_database
from app.runners.models import Runner, RunnerJob
from app.runners.transitions import runner_name
from tests.integration.runners.fake_gitlab import FakeGitLab
from tests.integration.runners.payloads import INSTANCE, TOKEN, headers, job_hook
from tests.integration.workflows.stack import KEY_ID, KEY_SECRET, Stack, stack
from tests.services import moto_server, wait_for

WAIT = 60
OTHER_TOKEN = "other-hook-3Fv8Lq1Xc6Np9Dz4"
VIEWER_SECRET = "viewer-9Tq4Wm7Zp2Kx6Rb3Ns8v"
MACHINES = ("gitlab-start-runner", "gitlab-stop-runner")
_ids = itertools.count(1000)

PROFILES = """
default: small
profiles:
  small:
    kind: ec2
    tags: [aws]
    image_id: ami-12345678
    instance_types: [t3.small, t3a.small]
    spot: true
    max_lifetime_minutes: 60
    idle_timeout_minutes: 5
    max_concurrent: 20
    prices:
      t3.small: {on_demand: 0.0208, spot: 0.0062}
  big:
    kind: ec2
    tags: [aws, big]
    image_id: ami-12345678
    instance_types: [c5.2xlarge]
    max_concurrent: 1
  broken:
    kind: ec2
    tags: [broken]
    image_id: ami-12345678
    instance_types: [t3.small, t3a.small]
    spot: true
    subnet_id: subnet-doesnotexist
  warm:
    kind: ec2
    tags: [warm]
    image_id: ami-12345678
    instance_types: [t3.small]
    max_concurrent: 4
    pool: {idle_count: 1, idle_time: 10m}
job_tags:
  - project_id: 380
    job_name: "heavy*"
    tags: [big]
"""


@dataclass
class RunnerStack:
    stack: Stack
    gitlab: FakeGitLab
    ec2: Any

    @property
    def url(self) -> str:
        return self.stack.url

    def post(self, payload: Any, headers: dict[str, str]) -> httpx.Response:
        self.gitlab.hook(payload)  # GitLab's own state changes before it sends the hook
        return httpx.post(f"{self.url}/webhooks/gitlab", json=payload, headers=headers, timeout=10)

    def instances(self, job_id: int, states: tuple[str, ...] = ("pending", "running")) -> list[Any]:
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag:smokehouse:job-id", "Values": [str(job_id)]},
                {"Name": "instance-state-name", "Values": list(states)},
            ]
        )
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    @property
    def db(self) -> Database:
        return get_database(self.stack.settings.sqlalchemy_url)

    def job(self, job_id: int) -> RunnerJob | None:
        with self.db.session() as session:
            return session.scalar(
                select(RunnerJob).where(RunnerJob.gitlab == INSTANCE, RunnerJob.job_id == job_id)
            )

    def runner(self, job_id: int) -> Runner | None:
        with self.db.session() as session:
            return session.get(Runner, runner_name(INSTANCE, job_id))

    def settle(self) -> None:
        """Every delivery delivered and every runner workflow finished."""
        client = self.stack.client()

        def quiet() -> bool:
            with self.db.session() as session:
                busy = session.scalar(
                    select(func.count()).where(Delivery.status.in_(("pending", "running")))
                )
            if busy:
                return False
            for name in MACHINES:
                arn = f"arn:aws:states:us-east-1:000000000000:stateMachine:{name}"
                if client.list_executions(stateMachineArn=arn, statusFilter="RUNNING")[
                    "executions"
                ]:
                    return False
            return True

        wait_for(quiet, WAIT, interval=0.2, what="deliveries and executions to finish")

    def start(self, job_id: int) -> dict[str, Any]:
        """Send a pending Job Hook; wait for its instance and its runner row."""
        response = self.post(job_hook(job_id, "pending"), headers())
        assert response.status_code == 200, response.text
        wait_for(lambda: self.instances(job_id), WAIT, what=f"an instance for job {job_id}")
        wait_for(
            lambda: (r := self.runner(job_id)) is not None and r.state == "running",
            WAIT,
            what="the runner to be recorded running",
        )
        [instance] = self.instances(job_id)
        return instance

    def graphql(self, query: str, secret: str = KEY_SECRET, **variables: Any) -> dict[str, Any]:
        login = httpx.post(f"{self.url}/auth/session", json={"key": secret}, timeout=30)
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {login.json()['token']}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="session")
def moto_env() -> Iterator[dict[str, str]]:
    with moto_server() as env:
        yield env


@pytest.fixture(scope="session", params=["embedded", "production"])
def runners(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    moto_env: dict[str, str],
) -> Iterator[RunnerStack]:
    tmp: Path = tmp_path_factory.mktemp(f"runners-{request.param}")
    profiles = tmp / "runners.yaml"
    profiles.write_text(PROFILES)
    with FakeGitLab() as gitlab, pytest.MonkeyPatch.context() as patch:
        gitlab.projects[380] = {"id": 380, "path_with_namespace": "gitlab-org/gitlab-test"}
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        patch.chdir(tmp)
        worker_env = {
            **moto_env,
            "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN": f"{OTHER_TOKEN},{TOKEN}",
            "SMOKEHOUSE_RUNNERS_PROFILES_FILE": str(profiles),
            "SMOKEHOUSE_RUNNERS_IDLE_SECONDS": "600",
            "SMOKEHOUSE_GITLAB_URL": gitlab.url,
            "SMOKEHOUSE_GITLAB_API_TOKEN": gitlab.token,
        }
        for name, value in worker_env.items():  # the API and reconcile in this process too
            patch.setenv(name, value)
        with stack(
            request.param,
            tmp,
            worker_env,
            gitlab_webhook_token=f"{OTHER_TOKEN},{TOKEN}",
            access_keys=f"{KEY_ID}:{KEY_SECRET}:admin,AKVIEWER:{VIEWER_SECRET}:viewer",
        ) as built:
            yield RunnerStack(built, gitlab, boto3.client("ec2"))


@pytest.fixture
def job_id(runners: RunnerStack) -> int:
    """A job id no other test (of either mode) uses; GitLab knows its tags: [aws]."""
    value = next(_ids) + (0 if runners.stack.mode == "embedded" else 50_000)
    runners.gitlab.jobs[(380, value)] = {"id": value, "name": "test", "tag_list": ["aws"]}
    return value
