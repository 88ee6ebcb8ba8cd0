"""The secret-leak sweep: after a whole runner flow (a pending job → GitLab runner created → EC2
instance or container started → job finished → stopped), the GitLab runner token appears in
nothing a viewer or an admin can read — Step Functions answers (DescribeExecution,
GetExecutionHistory, ListExecutions), GraphQL (executions and their history, CI jobs and
runners, bus events and deliveries), the database rows those are read from (events, history,
results; everything but the encrypted secret store), the API's and the workers' logs — and yet
it did reach the runner (EC2 user data / the container's environment)."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import docker
import pytest
from sqlalchemy import select

import app.models  # noqa: F401  (every table on Base.metadata)
from app.db import Base, get_database
from app.runners.transitions import runner_name
from tests.integration.runners.conftest import (  # noqa: F401  (fixtures)
    VIEWER_SECRET,
    RunnerStack,
    job_id,
    moto_env,
    runners,
)
from tests.integration.runners.fake_gitlab import FakeGitLab
from tests.integration.runners.payloads import INSTANCE, TOKEN, headers, job_hook, runner_block
from tests.integration.workflows.stack import KEY_ID, KEY_SECRET, Stack, stack
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 60
MACHINES = ("gitlab-start-runner", "gitlab-stop-runner")
GRAPHQL = """
query($jobId: Int!) {
  executions(limit: 40) {
    arn name stateMachine status input output error cause
    history(limit: 100) { id type details }
  }
  ciJob(jobId: $jobId) { jobId status phase error ranOn timeline { status } }
  ciJobs(limit: 100) { jobId error }
  ciRunners(includeStopped: true) { name state error logs gitlabRunnerId }
  events(bus: "default", limit: 200) { id source detailType envelope }
  deliveries(limit: 100) { id status lastError attemptLog { outcome error } }
  deadLetters(limit: 100) { id }
}
"""


def _sfn(url: str, key_id: str, secret: str) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def _graphql(url: str, key_id: str, secret: str, job: int) -> str:
    """GraphQL as a user asks it: log in (the only request carrying the secret), then query."""
    import httpx

    login = httpx.post(f"{url}/auth/session", json={"id": key_id, "key": secret}, timeout=30)
    assert login.status_code == 200, login.text
    response = httpx.post(
        f"{url}/graphql",
        json={"query": GRAPHQL, "variables": {"jobId": job}},
        headers={"Authorization": f"Bearer {login.json()['token']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return response.text


def _step_functions(url: str, key_id: str, secret: str) -> list[str]:
    """Everything the Step Functions API answers about the runner workflows."""
    client = _sfn(url, key_id, secret)
    seen: list[str] = []
    for machine in MACHINES:
        arn = f"arn:aws:states:us-east-1:000000000000:stateMachine:{machine}"
        listed = client.list_executions(stateMachineArn=arn, maxResults=1000)
        seen.append(json.dumps(listed, default=str))
        for execution in listed["executions"]:
            described = client.describe_execution(executionArn=execution["executionArn"])
            seen.append(json.dumps(described, default=str))
            pages = client.get_paginator("get_execution_history").paginate(
                executionArn=execution["executionArn"], includeExecutionData=True
            )
            seen.extend(json.dumps(page, default=str) for page in pages)
    return seen


UPDATES = """subscription { executionUpdates {
  execution { arn status input output error cause } events { id type details } } }"""


@contextmanager
def watched_updates(url: str, key_id: str, secret: str) -> Iterator[list[str]]:
    """A viewer's ``executionUpdates`` subscription over a real WebSocket, held open while the
    flow runs: every message it pushes is kept for the sweep."""
    import httpx
    from websockets.sync.client import connect

    login = httpx.post(f"{url}/auth/session", json={"id": key_id, "key": secret}, timeout=30)
    assert login.status_code == 200, login.text
    seen: list[str] = []
    stop = threading.Event()
    with connect(
        url.replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"]
    ) as ws:
        init = {"authorization": f"Bearer {login.json()['token']}"}
        ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": UPDATES}}))

        def read() -> None:
            while not stop.is_set():
                try:
                    seen.append(str(ws.recv(timeout=0.2)))
                except TimeoutError:
                    continue
                except Exception:  # the socket closed under us: what was read is kept
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            yield seen
        finally:
            stop.set()
            reader.join(5)


def _database_rows(url: str) -> list[str]:
    """Every row of every table but the secret store's own (whose values are ciphertext)."""
    seen: list[str] = []
    with get_database(url).session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                seen.append(
                    table.name
                    + ": "
                    + " ".join(
                        v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in row
                    )
                )
    return seen


def sweep(built: Stack, job: int, caplog: pytest.LogCaptureFixture) -> dict[str, list[str]]:
    """Where a secret could be read from, by place."""
    places: dict[str, list[str]] = {
        "step functions (admin)": _step_functions(built.url, KEY_ID, KEY_SECRET),
        "step functions (viewer)": _step_functions(built.url, "AKVIEWER", VIEWER_SECRET),
        "graphql (admin)": [_graphql(built.url, KEY_ID, KEY_SECRET, job)],
        "graphql (viewer)": [_graphql(built.url, "AKVIEWER", VIEWER_SECRET, job)],
        "database": _database_rows(built.settings.sqlalchemy_url),
        "api log": [caplog.text],
        "worker logs": [w.log.read_text(errors="replace") for w in built.workers],
    }
    return places


def leaks(places: dict[str, list[str]], secret: str) -> list[str]:
    found = []
    for place, texts in places.items():
        for text in texts:
            at = text.find(secret)
            if at >= 0:
                found.append(f"{place}: …{text[max(0, at - 120) : at + 40]}…")
                break
    return found


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="smokehouse"):
        yield caplog


def test_ec2_runner_token_reaches_the_instance_and_nothing_else(
    runners: RunnerStack,  # noqa: F811
    job_id: int,  # noqa: F811
    logs: pytest.LogCaptureFixture,
) -> None:
    name = runner_name(INSTANCE, job_id)
    with watched_updates(runners.stack.url, "AKVIEWER", VIEWER_SECRET) as updates:
        instance = runners.start(job_id)
        [created] = [r for r in runners.gitlab.runners.values() if r["description"] == name]
        token = created["token"]
        assert token.startswith("glrt-")
        user_data = base64.b64decode(
            runners.ec2.describe_instance_attribute(
                InstanceId=instance["InstanceId"], Attribute="userData"
            )["UserData"]["Value"]
        ).decode()
        assert token in user_data  # it did reach the runner
        assert "{{resolve:" not in user_data

        running = runner_block(created["id"], name, ["aws"])
        assert (
            runners.post(job_hook(job_id, "running", runner=running), headers()).status_code == 200
        )
        assert (
            runners.post(job_hook(job_id, "success", runner=running), headers()).status_code == 200
        )
        wait_for(
            lambda: (r := runners.runner(job_id)) is not None and r.state == "terminated",
            WAIT,
            what="the runner to be recorded terminated",
        )
        runners.settle()
        wait_for(
            lambda: sum("ExecutionSucceeded" in u for u in updates) >= 2,
            WAIT,
            what="the viewer's subscription to see both workflows succeed",
        )

    # The pushed history carries the launch parameters, where the token used to travel: the
    # reference stands in its place.
    assert any("{{resolve:smokehouse:" in update for update in updates)
    places = sweep(runners.stack, job_id, logs)
    places["executionUpdates (viewer)"] = updates
    found = leaks(places, token)
    assert not found, "the runner token leaked:\n" + "\n".join(found)
    from app.secrets.models import Secret

    with runners.db.session() as session:  # it died with its runner
        assert not session.scalars(select(Secret).where(Secret.owner == name)).all()


def test_a_warm_pool_runner_token_reaches_its_instance_and_nothing_else(
    runners: RunnerStack,  # noqa: F811
    job_id: int,  # noqa: F811
    logs: pytest.LogCaptureFixture,
) -> None:
    """A pool runner's token never touches the secret store or a workflow: the pool pass hands
    it from GitLab's answer to RunInstances' user data, and nothing else may hold it."""
    from app.runners.handlers import current_profiles
    from app.runners.models import Runner
    from app.runners.pool import maintain

    settings = runners.stack.settings
    maintain(settings, current_profiles(settings), ec2=runners.ec2)

    def idle() -> list[Runner]:
        with runners.db.session() as session:
            return list(
                session.scalars(
                    select(Runner).where(Runner.profile == "warm", Runner.state == "idle")
                )
            )

    wait_for(idle, WAIT, what="an idle pool runner")
    warm = idle()[0]
    token = runners.gitlab.runners[warm.gitlab_runner_id or 0]["token"]
    assert token.startswith("glrt-")
    user_data = base64.b64decode(
        runners.ec2.describe_instance_attribute(
            InstanceId=str(warm.provider_id), Attribute="userData"
        )["UserData"]["Value"]
    ).decode()
    assert token in user_data  # it did reach the runner
    runners.gitlab.jobs[(380, job_id)] = {"id": job_id, "name": "test", "tag_list": ["warm"]}
    assert runners.post(job_hook(job_id, "pending"), headers()).status_code == 200
    wait_for(
        lambda: (j := runners.job(job_id)) is not None and j.phase == "assigned",
        WAIT,
        what="the job to take a warm runner",
    )
    ran = runner_block(warm.gitlab_runner_id or 0, warm.name, ["warm"])
    assert runners.post(job_hook(job_id, "running", runner=ran), headers()).status_code == 200
    assert runners.post(job_hook(job_id, "success", runner=ran), headers()).status_code == 200
    runners.settle()
    found = leaks(sweep(runners.stack, job_id, logs), token)
    assert not found, "the pool runner's token leaked:\n" + "\n".join(found)


# --- the container profile (Podman's Docker API; skipped where Podman is missing) -------------

COMMAND = "trap 'exit 0' TERM; sleep 600 & wait"


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.integration.scaling.podman import podman_api

    with podman_api(tmp_path_factory.mktemp("podman")) as host:
        yield host
        client = docker.DockerClient(base_url=host, timeout=60)
        for container in client.containers.list(
            all=True, filters={"label": "smokehouse:managed=runner"}
        ):
            container.remove(force=True)
        client.close()


@pytest.fixture(scope="module")
def box(
    tmp_path_factory: pytest.TempPathFactory, podman: str
) -> Iterator[tuple[Stack, FakeGitLab]]:
    from tests.integration.scaling.podman import IMAGE

    tmp: Path = tmp_path_factory.mktemp("leak-containers")
    profiles = tmp / "runners.yaml"
    profiles.write_text(
        "default: box\nprofiles:\n  box:\n    kind: container\n"
        f"    image: {IMAGE}\n"
        f'    command: ["/bin/sh", "-c", "{COMMAND}"]\n'
        '    volumes: ["/usr:/usr:ro"]\n    memory: 256m\n    timeout_minutes: 5\n'
    )
    with FakeGitLab() as gitlab, pytest.MonkeyPatch.context() as patch:
        gitlab.projects[380] = {"id": 380, "path_with_namespace": "gitlab-org/gitlab-test"}
        env = {
            "DOCKER_HOST": podman,
            "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN": TOKEN,
            "SMOKEHOUSE_RUNNERS_PROFILES_FILE": str(profiles),
            "SMOKEHOUSE_GITLAB_URL": gitlab.url,
            "SMOKEHOUSE_GITLAB_API_TOKEN": gitlab.token,
        }
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        patch.chdir(tmp)
        with stack(
            "embedded",
            tmp,
            env,
            gitlab_webhook_token=TOKEN,
            access_keys=f"{KEY_ID}:{KEY_SECRET}:admin,AKVIEWER:{VIEWER_SECRET}:viewer",
        ) as built:
            yield built, gitlab


def test_container_runner_token_reaches_the_container_and_nothing_else(
    box: tuple[Stack, FakeGitLab], podman: str, logs: pytest.LogCaptureFixture
) -> None:
    import httpx

    from app.runners.models import Runner

    built, gitlab = box
    job = 7301
    gitlab.jobs[(380, job)] = {"id": job, "name": "test", "tag_list": []}
    name = runner_name(INSTANCE, job)
    database = get_database(built.settings.sqlalchemy_url)

    def state() -> str | None:
        with database.session() as session:
            row = session.get(Runner, name)
            return None if row is None else row.state

    def post(payload: Any) -> None:
        gitlab.hook(payload)
        response = httpx.post(f"{built.url}/webhooks/gitlab", json=payload, headers=headers())
        assert response.status_code == 200, response.text

    post(job_hook(job, "pending"))
    wait_for(lambda: state() == "running", WAIT, what="the job's container")
    [created] = [r for r in gitlab.runners.values() if r["description"] == name]
    token = created["token"]
    engine = docker.DockerClient(base_url=podman, timeout=60)
    try:
        environment = engine.containers.get(name).attrs["Config"]["Env"]
    finally:
        engine.close()
    assert f"CI_SERVER_TOKEN={token}" in environment  # it did reach the runner

    running = runner_block(created["id"], name, [])
    post(job_hook(job, "running", runner=running))
    post(job_hook(job, "success", runner=running))
    wait_for(lambda: state() == "terminated", WAIT, what="the container to stop")
    wait_for(
        lambda: (
            not _sfn(built.url, KEY_ID, KEY_SECRET).list_executions(
                stateMachineArn="arn:aws:states:us-east-1:000000000000:stateMachine:gitlab-stop-runner",
                statusFilter="RUNNING",
            )["executions"]
        ),
        WAIT,
        what="the stop workflow to finish",
    )

    found = leaks(sweep(built, job, logs), token)
    assert not found, "the runner token leaked:\n" + "\n".join(found)
