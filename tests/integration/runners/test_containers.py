"""Job containers over the Docker Engine API, against real Podman: a job runs with our labels and
limits, its logs are captured, it is removed when stopped; starting is idempotent by name; timeouts
and leftovers are found; and every failure is a clear ContainerError that leaves nothing behind.

The spec → engine mapping and the time/expiry helpers are pure and tested without an engine.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest

from app.runners.containers import (
    MANAGED_LABEL,
    TIMEOUT_LABEL,
    ContainerError,
    ContainerRunners,
    ContainerSpec,
    RunningContainer,
    parse_engine_time,
    run_kwargs,
)
from tests.integration.scaling.podman import IMAGE, podman_api
from tests.services import wait_for

RUN = f"r2-{uuid.uuid4().hex[:8]}"  # this test run's containers, for cleanup
USR = {"/usr": {"bind": "/usr", "mode": "ro"}}


def spec(name: str, command: list[str] | None, **changes: Any) -> ContainerSpec:
    fields: dict[str, Any] = {
        "name": f"{RUN}-{name}",
        "image": IMAGE,
        "command": command,
        "environment": {"JOB_ID": "42"},
        "labels": {"smokehouse:job-id": "42", "smokehouse:test-run": RUN},
        "cpus": None,
        "memory": None,
        "timeout_seconds": 600,
        "volumes": USR,
    }
    return ContainerSpec(**{**fields, **changes})


# -- the pure mapping -------------------------------------------------------------------------


def test_spec_maps_to_engine_arguments() -> None:
    kwargs = run_kwargs(
        spec(
            "map",
            ["/bin/sh", "-c", "echo hi"],
            cpus=1.5,
            memory="512M",
            network="ci",
            timeout_seconds=900,
            working_dir="/work",
        )
    )
    assert kwargs == {
        "image": IMAGE,
        "command": ["/bin/sh", "-c", "echo hi"],
        "name": f"{RUN}-map",
        "detach": True,
        "environment": {"JOB_ID": "42"},
        "labels": {
            "smokehouse:job-id": "42",
            "smokehouse:test-run": RUN,
            MANAGED_LABEL: "runner",
            TIMEOUT_LABEL: "900",
        },
        "nano_cpus": 1_500_000_000,
        "mem_limit": "512m",
        "network": "ci",
        "volumes": USR,
        "working_dir": "/work",
    }


def test_no_limits_no_network_and_the_image_command() -> None:
    kwargs = run_kwargs(spec("bare", None, volumes={}))
    assert kwargs["command"] is None
    assert not {"nano_cpus", "mem_limit", "network", "network_mode", "volumes"} & set(kwargs)


@pytest.mark.parametrize("mode", ["host", "none", "bridge", "container:abc"])
def test_network_modes_are_not_network_names(mode: str) -> None:
    kwargs = run_kwargs(spec("net", None, network=mode))
    assert kwargs["network_mode"] == mode
    assert "network" not in kwargs


def test_our_labels_cannot_be_overridden_by_a_profile() -> None:
    labels = {MANAGED_LABEL: "someone-else", TIMEOUT_LABEL: "999999"}
    kwargs = run_kwargs(spec("labels", None, labels=labels, timeout_seconds=60))
    assert kwargs["labels"] == {MANAGED_LABEL: "runner", TIMEOUT_LABEL: "60"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"name": "bad name!"}, "name"),
        ({"name": ""}, "name"),
        ({"image": ""}, "image"),
        ({"image": "two words"}, "image"),
        ({"cpus": 0}, "cpus"),
        ({"cpus": -1.0}, "cpus"),
        ({"memory": "lots"}, "memory"),
        ({"memory": "0"}, "memory"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"command": []}, "command"),
        ({"command": ["/bin/sh", ""]}, "command"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(changes: dict[str, Any], reason: str) -> None:
    bad = dataclasses.replace(spec("bad", None), **changes)
    with pytest.raises(ContainerError, match=reason):
        run_kwargs(bad)


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ContainerError) as refused:
        run_kwargs(spec("bad", None, cpus=0, memory="x", timeout_seconds=-1))
    assert all(word in str(refused.value) for word in ("cpus", "memory", "timeout_seconds"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-26T16:52:02.532107984Z", datetime(2026, 11, 26, 16, 52, 2, 532107, UTC)),
        ("2026-11-26T16:52:02Z", datetime(2026, 11, 26, 16, 52, 2, tzinfo=UTC)),
        ("2026-11-26T17:52:02.5+01:00", datetime(2026, 11, 26, 16, 52, 2, 500000, UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_engine_times(value: object, expected: datetime | None) -> None:
    assert parse_engine_time(value) == expected


def test_expiry_needs_a_running_container_past_its_timeout() -> None:
    began = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    running = RunningContainer("id", "n", {TIMEOUT_LABEL: "60"}, "running", began, None)
    assert not running.is_expired(began + timedelta(seconds=60))
    assert running.is_expired(began + timedelta(seconds=61))
    assert running.is_expired(datetime(2026, 1, 1, 12, 5))  # naive now is taken as UTC
    exited = RunningContainer("id", "n", {TIMEOUT_LABEL: "60"}, "exited", began, 0)
    assert not exited.is_expired(began + timedelta(hours=1))
    unlabelled = RunningContainer("id", "n", {}, "running", began, None)
    assert not unlabelled.is_expired(began + timedelta(hours=1))


def test_an_unreachable_engine_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    runners = ContainerRunners()  # lazily connected: constructing never fails
    with pytest.raises(ContainerError, match="unreachable"):
        runners.list_ours()
    with pytest.raises(ContainerError, match="unreachable"):
        runners.start(spec("nowhere", ["/bin/true"]))


# -- against Podman ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with podman_api(tmp_path_factory.mktemp("podman")) as host:
        client = docker.DockerClient(base_url=host, timeout=60)
        try:
            yield client
        finally:
            for container in client.containers.list(
                all=True, filters={"label": f"smokehouse:test-run={RUN}"}
            ):
                container.remove(force=True)
            client.close()


@pytest.fixture
def runners(engine: Any) -> ContainerRunners:
    return ContainerRunners(engine, stop_grace_seconds=1)


def exists(engine: Any, name: str) -> bool:
    try:
        engine.containers.get(name)
        return True
    except docker.errors.NotFound:
        return False


@pytest.mark.integration
@pytest.mark.slow
def test_a_job_runs_with_labels_and_limits_is_logged_and_removed(
    runners: ContainerRunners, engine: Any
) -> None:
    job = spec(
        "job-42",
        ["/bin/sh", "-c", 'echo "job $JOB_ID done"; echo warning >&2'],
        cpus=0.5,
        memory="64m",
        timeout_seconds=120,
    )
    started = runners.start(job)
    assert started.name == job.name
    assert started.labels[MANAGED_LABEL] == "runner"
    assert started.labels[TIMEOUT_LABEL] == "120"
    assert started.labels["smokehouse:job-id"] == "42"
    assert started.started_at is not None

    inspected = engine.containers.get(job.name).attrs
    assert inspected["HostConfig"]["NanoCpus"] == 500_000_000
    assert inspected["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert inspected["HostConfig"].get("AutoRemove") in (False, None)  # logs outlive the job

    def finished() -> bool:
        ours = [c for c in runners.list_ours() if c.name == job.name]
        return bool(ours) and ours[0].status == "exited"

    wait_for(finished, 30, what="the job container to exit")
    [done] = [c for c in runners.list_ours() if c.name == job.name]
    assert done.exit_code == 0
    assert "job 42 done" in runners.logs(job.name)

    logs = runners.stop(job.name)
    assert logs is not None
    assert "job 42 done" in logs
    assert "warning" in logs
    assert not exists(engine, job.name)
    assert runners.stop(job.name) is None  # idempotent


@pytest.mark.integration
@pytest.mark.slow
def test_start_is_idempotent_by_name(runners: ContainerRunners, engine: Any) -> None:
    job = spec("twice", ["/bin/sleep", "60"])
    first = runners.start(job)
    again = runners.start(job)
    assert again.id == first.id

    created = spec("created-only", ["/bin/sleep", "60"])
    engine.containers.create(**run_kwargs(created))  # a start that died before starting it
    resumed = runners.start(created)
    assert resumed.status == "running"

    racing = spec("race", ["/bin/sleep", "60"])
    results: list[RunningContainer | Exception] = []

    def start() -> None:
        try:
            results.append(ContainerRunners(engine).start(racing))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(r, RunningContainer) for r in results), results
    assert len({r.id for r in results if isinstance(r, RunningContainer)}) == 1
    names = [c.name for c in runners.list_ours()]
    assert names.count(job.name) == 1
    assert names.count(racing.name) == 1

    logs = runners.stop(job.name)  # a running job is stopped within the grace period
    assert logs == ""
    assert runners.stop(racing.name) == ""
    assert runners.stop(created.name) == ""
    assert not any(exists(engine, j.name) for j in (job, racing, created))


@pytest.mark.integration
@pytest.mark.slow
def test_timeouts_are_detected_on_running_containers_only(runners: ContainerRunners) -> None:
    short = runners.start(spec("short-timeout", ["/bin/sleep", "60"], timeout_seconds=5))
    long = runners.start(spec("long-timeout", ["/bin/sleep", "60"], timeout_seconds=3600))
    quick = runners.start(spec("exits", ["/bin/true"], timeout_seconds=1))
    wait_for(
        lambda: any(c.name == quick.name and c.status == "exited" for c in runners.list_ours()),
        30,
        what="the quick container to exit",
    )
    assert short.started_at is not None
    now = short.started_at + timedelta(seconds=30)
    expired = {c.name for c in runners.expired(now)}
    assert short.name in expired
    assert long.name not in expired
    assert quick.name not in expired
    assert short.name not in {c.name for c in runners.expired(short.started_at)}
    for container in (short, long, quick):
        runners.stop(container.name)


@pytest.mark.integration
@pytest.mark.slow
def test_leftovers_are_found_by_a_fresh_instance_and_strangers_are_not(
    runners: ContainerRunners, engine: Any
) -> None:
    left = runners.start(spec("leftover", ["/bin/sleep", "60"]))
    stranger = engine.containers.create(
        IMAGE,
        command=["/bin/sleep", "60"],
        name=f"{RUN}-stranger",
        labels={"smokehouse:test-run": RUN},
        volumes=USR,
    )
    try:
        after_restart = ContainerRunners(engine, stop_grace_seconds=1)
        found = {c.name: c for c in after_restart.list_ours()}
        assert left.name in found
        assert found[left.name].status == "running"
        assert stranger.name not in found
        assert after_restart.stop(left.id) == ""  # by id works as well as by name
        assert left.name not in {c.name for c in after_restart.list_ours()}
    finally:
        stranger.remove(force=True)


@pytest.mark.integration
@pytest.mark.slow
def test_a_missing_image_is_clear_and_creates_nothing(
    runners: ContainerRunners, engine: Any
) -> None:
    job = spec("no-image", ["/bin/true"], image=f"localhost/{RUN}-missing:1")
    with pytest.raises(ContainerError, match="not found locally and cannot be pulled"):
        runners.start(job)
    assert not exists(engine, job.name)


@pytest.mark.integration
@pytest.mark.slow
def test_a_command_that_cannot_start_leaves_nothing(runners: ContainerRunners, engine: Any) -> None:
    job = spec("no-command", ["/nonexistent/binary"])
    with pytest.raises(ContainerError, match="start container"):
        runners.start(job)
    assert not exists(engine, job.name)
    with pytest.raises(ContainerError, match="no container"):
        runners.logs(job.name)


@pytest.mark.integration
@pytest.mark.slow
def test_an_engine_that_goes_away_is_a_clear_error(tmp_path: Path) -> None:
    with podman_api(tmp_path) as host:
        client = docker.DockerClient(base_url=host, timeout=10)
        runners = ContainerRunners(client)
        assert isinstance(runners.list_ours(), list)
    try:
        with pytest.raises(ContainerError, match="unreachable"):
            runners.list_ours()
        with pytest.raises(ContainerError, match="unreachable"):
            runners.stop("anything")
    finally:
        client.close()
