"""Container runners through the real webhook, bus, workflows and worker against Podman's
Docker API: a pending job's container starts with our labels, a finished job's is stopped with
its logs kept and removed; a profile at capacity makes jobs wait until a slot frees; reconcile
removes leftovers; a warm-pool container takes a job at once and the worker refills the pool.
No GitLab API here: tags come from the fallback map (none → the default)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from sqlalchemy import select

from app.db import get_database, utcnow
from app.runners.containers import ContainerRunners
from app.runners.models import Runner, RunnerJob
from app.runners.profiles import load_profiles
from app.runners.reconcile import reconcile
from app.runners.settings import load_runners_settings
from app.runners.transitions import runner_name
from tests.integration.runners.payloads import INSTANCE, TOKEN, headers, job_hook
from tests.integration.scaling.podman import IMAGE, podman_api
from tests.integration.workflows.stack import Stack, stack
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 60
COMMAND = (
    "echo runner $RUNNER_NAME for job $SMOKEHOUSE_JOB_ID; trap 'exit 0' TERM; sleep 600 & wait"
)
PROFILES = f"""
default: box
profiles:
  box:
    kind: container
    image: {IMAGE}
    command: ["/bin/sh", "-c", "{COMMAND}"]
    volumes: ["/usr:/usr:ro"]
    memory: 256m
    timeout_minutes: 5
    max_concurrent: 1
  warmbox:
    kind: container
    tags: [warmbox]
    image: {IMAGE}
    command: ["/bin/sh", "-c", "{COMMAND}"]
    volumes: ["/usr:/usr:ro"]
    memory: 256m
    timeout_minutes: 30
    max_concurrent: 2
    pool: {{idle_count: 1, idle_time: 10m}}
job_tags:
  - job_name: "warm-*"
    tags: [warmbox]
"""


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with podman_api(tmp_path_factory.mktemp("podman")) as host:
        yield host
        client = docker.DockerClient(base_url=host, timeout=60)
        for container in client.containers.list(
            all=True, filters={"label": "smokehouse:managed=runner"}
        ):
            container.remove(force=True)
        client.close()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, podman: str) -> Iterator[tuple[Stack, Path]]:
    tmp = tmp_path_factory.mktemp("runners-containers")
    profiles = tmp / "runners.yaml"
    profiles.write_text(PROFILES)
    env = {
        "DOCKER_HOST": podman,
        "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN": TOKEN,
        "SMOKEHOUSE_RUNNERS_PROFILES_FILE": str(profiles),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        patch.chdir(tmp)
        with stack("embedded", tmp, env, gitlab_webhook_token=TOKEN) as built:
            yield built, profiles


def post(built: Stack, payload: Any) -> None:
    response = httpx.post(f"{built.url}/webhooks/gitlab", json=payload, headers=headers())
    assert response.status_code == 200, response.text


def runner(built: Stack, job_id: int) -> Runner | None:
    with get_database(built.settings.sqlalchemy_url).session() as session:
        return session.get(Runner, runner_name(INSTANCE, job_id))


def job(built: Stack, job_id: int) -> RunnerJob | None:
    with get_database(built.settings.sqlalchemy_url).session() as session:
        return session.scalar(select(RunnerJob).where(RunnerJob.job_id == job_id))


def state(built: Stack, job_id: int) -> str | None:
    found = runner(built, job_id)
    return None if found is None else found.state


def test_container_per_job_with_capacity_logs_and_reconcile(
    box: tuple[Stack, Path], podman: str
) -> None:
    built, profiles = box
    engine = docker.DockerClient(base_url=podman, timeout=60)
    post(built, job_hook(7001, "pending"))
    wait_for(lambda: state(built, 7001) == "running", WAIT, what="job 7001's container")
    container = engine.containers.get(runner_name(INSTANCE, 7001))
    assert container.labels["smokehouse:job-id"] == "7001"
    assert container.labels["smokehouse:project-id"] == "380"
    assert container.labels["smokehouse:profile"] == "box"
    assert container.labels["smokehouse:managed"] == "runner"

    post(built, job_hook(7002, "pending"))  # the profile allows one at a time: this one waits
    wait_for(
        lambda: (j := job(built, 7002)) is not None and j.phase == "waiting",
        WAIT,
        what="job 7002 to wait for a slot",
    )
    post(built, job_hook(7001, "success"))
    wait_for(lambda: state(built, 7001) == "terminated", WAIT, what="job 7001's container to stop")
    first = runner(built, 7001)
    assert first is not None
    assert f"runner {first.name} for job 7001" in (first.logs or "")
    names = {c.name for c in engine.containers.list(all=True)}
    assert first.name not in names  # removed
    wait_for(lambda: state(built, 7002) == "running", WAIT, what="job 7002 to get the freed slot")

    # A leftover (no runner row) and a lost finish: reconcile cleans both up.
    ours = ContainerRunners(engine, stop_grace_seconds=1)
    leftover = engine.containers.run(
        IMAGE,
        ["/bin/sh", "-c", "sleep 600"],
        name="smokehouse-9999-000000",
        labels={"smokehouse:managed": "runner", "smokehouse:job-id": "9999"},
        volumes={"/usr": {"bind": "/usr", "mode": "ro"}},
        detach=True,
    )
    later = utcnow() + timedelta(minutes=20)  # past the grace and the profile's timeout
    report = reconcile(
        built.settings,
        load_runners_settings(),
        load_profiles(profiles),
        now=later,
        containers=ours,
    )
    assert leftover.name in report.terminated
    assert runner_name(INSTANCE, 7002) in report.terminated
    assert state(built, 7002) == "terminated"
    assert {c.name for c in ours.list_ours()} == set()
    engine.close()


def test_a_warm_pool_container_takes_a_job_at_once_and_is_replaced(
    box: tuple[Stack, Path], podman: str
) -> None:
    from app.runners.pool import POOL_TAG, maintain

    built, profiles = box
    engine = docker.DockerClient(base_url=podman, timeout=60)
    database = get_database(built.settings.sqlalchemy_url)

    def idle() -> list[Runner]:
        with database.session() as session:
            return list(
                session.scalars(
                    select(Runner).where(Runner.profile == "warmbox", Runner.state == "idle")
                )
            )

    report = maintain(built.settings, load_profiles(profiles))
    assert len(report.launched) == 1, report
    [warm] = idle()
    container = engine.containers.get(warm.name)
    assert container.labels[POOL_TAG] == "warmbox"
    assert container.labels["smokehouse:job-id"] == "pool"

    post(built, job_hook(7101, "pending", name="warm-build"))
    wait_for(
        lambda: (j := job(built, 7101)) is not None and j.phase == "assigned",
        WAIT,
        what="job 7101 to take the warm container",
    )
    assert runner(built, 7101) is None  # no container of its own was started
    wait_for(lambda: idle(), WAIT, what="the worker to refill the pool")
    [refill] = idle()
    assert refill.name != warm.name

    ran = {"id": None, "description": warm.name, "active": True, "is_shared": False}
    post(built, job_hook(7101, "running", name="warm-build", runner=ran))
    post(built, job_hook(7101, "success", name="warm-build", runner=ran))

    def used_up() -> bool:
        with database.session() as session:
            row = session.get(Runner, warm.name)
            return row is not None and row.state == "terminated"

    wait_for(used_up, WAIT, what="the used warm container to stop (max_use 1)")
    with database.session() as session:
        row = session.get(Runner, warm.name)
        assert row is not None
        assert row.uses == 1
        assert f"runner {warm.name} for job" in (row.logs or "")
    assert warm.name not in {c.name for c in engine.containers.list(all=True)}
    engine.close()
