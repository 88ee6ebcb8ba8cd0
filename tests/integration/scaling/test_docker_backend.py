"""The Docker backend against Podman's Docker-compatible API: labelled worker containers run the
real ``smokehouse worker``, register, do the work, and leave by warm shutdown when idle."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.config import Settings
from app.db import get_database
from app.migrate import upgrade
from app.scaling.autoscaler import Autoscaler
from app.scaling.backends.docker import QUEUE, ROLE, DockerBackend
from app.scaling.models import ScalingWorker
from app.scaling.settings import load_scaling_settings
from tests.integration.scaling.podman import IMAGE, podman_api
from tests.integration.scaling.workers import BOOT, worker_env
from tests.services import ROOT, wait_for
from workers.celery_app import create_celery

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def docker_client(tmp_path: Path) -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    with podman_api(tmp_path) as host:
        client = docker.DockerClient(base_url=host, timeout=60)
        yield client
        client.close()


def test_containers_scale_out_work_and_drain(
    docker_client: Any, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(worker_concurrency=1)
    upgrade(settings.sqlalchemy_url)
    queue = f"scaling-test-{uuid.uuid4().hex[:8]}"
    python_home = Path(sys.base_prefix)
    run_options = {
        "network_mode": "host",
        "working_dir": str(tmp_path),
        "volumes": {
            "/usr": {"bind": "/usr", "mode": "ro"},
            str(python_home): {"bind": str(python_home), "mode": "ro"},
            str(ROOT): {"bind": str(ROOT), "mode": "ro"},
            str(tmp_path): {"bind": str(tmp_path), "mode": "rw"},
        },
    }
    env = {k: v for k, v in worker_env(settings).items() if k.startswith(("SMOKEHOUSE", "PYTHON"))}
    backend = DockerBackend(
        image=IMAGE,
        concurrency=1,
        environment={**env, "HOME": "/root", "PATH": "/usr/bin:/bin"},
        command=[sys.executable, "-c", BOOT, "worker"],
        client=docker_client,
        run_options=run_options,
    )
    scaling = load_scaling_settings(
        queues=queue,
        max_workers=2,
        stabilization_seconds=1,
        idle_cooldown_seconds=1,
        liveness_seconds=30,  # a cold first container start can take a while
        interval_seconds=1,
    )
    autoscaler = Autoscaler(settings, scaling, backend, publish=False)
    stop = threading.Event()
    loop = threading.Thread(target=autoscaler.serve, args=(stop, 0.2), daemon=True)
    marker = tmp_path / "marks.txt"
    try:
        celery = create_celery(settings)
        for _ in range(4):
            payload = {"seconds": 1, "path": str(marker)}
            celery.send_task("scaling.handle", args=["scaling-test-mark", payload], queue=queue)
        loop.start()

        def labelled() -> list[Any]:
            return backend.containers(queue)

        wait_for(lambda: len(labelled()) == 2, 30, what="two worker containers")
        labels = labelled()[0].labels
        assert labels[ROLE] == "worker"
        assert labels[QUEUE] == queue

        def handled() -> list[str]:
            return marker.read_text().splitlines() if marker.exists() else []

        wait_for(lambda: len(handled()) == 4, 60, what="the containers to handle every message")
        assert all(line.startswith("ctr-") for line in handled())

        database = get_database(settings.sqlalchemy_url)

        def drained() -> bool:
            with database.session() as session:
                rows = list(session.scalars(select(ScalingWorker)))
            # A container slow to boot may have been reaped and replaced: dead rows are fine.
            stopped = [w for w in rows if w.state == "stopped"]
            return len(stopped) >= 2 and all(w.state in ("stopped", "dead") for w in rows)

        wait_for(drained, 25, what="idle containers to stop by warm shutdown")
        wait_for(lambda: labelled() == [], 30, what="exited containers to be removed")
    except AssertionError:
        for container in backend.containers(queue):  # what the workers said, for the report
            print(container.name, container.logs().decode(errors="replace")[-3000:])
        raise
    finally:
        stop.set()
        loop.join(30)
        for container in backend.containers(queue):
            container.remove(force=True)


def test_a_scaled_worker_container_gets_the_whole_configuration(
    docker_client: Any, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """The backend hands down the autoscaler's own settings (worker_environment): a worker in a
    container sees GitLab, the secret key, the region, egress, Redis, IoT and queue settings;
    not the API's access keys. Before: only the database, broker, log format and handler
    modules, so such a worker started runners without a GitLab token or a secret key."""
    import tests.integration.scaling.handlers  # noqa: F401  (the producer checks the name)
    from app.config.environment import worker_environment
    from app.queues import messages
    from app.queues.models import QueueMessage
    from tests.conftest import TEST_SECRET_KEY
    from tests.keys import KEYS

    queue = f"scaling-test-{uuid.uuid4().hex[:8]}"
    settings = settings_factory(
        worker_concurrency=1,
        region="eu-central-1",
        secret_key=TEST_SECRET_KEY,
        access_keys=KEYS,
        redis_url="redis://127.0.0.1:6379/3",
        handler_modules="tests.integration.scaling.handlers",
        gitlab={"url": "http://gitlab.invalid", "api_token": "glpat-Zq81xv0c3kPmW7tRb2Yn"},
        egress={"allow": "192.168.7.0/24"},
        iot={"cook_idle_seconds": 77},
        queues={"max_receive_count": 4},
        scaling={"queues": queue},
    )
    upgrade(settings.sqlalchemy_url)
    python_home = Path(sys.base_prefix)
    run_options = {
        "network_mode": "host",
        "working_dir": str(tmp_path),
        "volumes": {
            "/usr": {"bind": "/usr", "mode": "ro"},
            str(python_home): {"bind": str(python_home), "mode": "ro"},
            str(ROOT): {"bind": str(ROOT), "mode": "ro"},
            str(tmp_path): {"bind": str(tmp_path), "mode": "rw"},
        },
    }
    environment = worker_environment(settings, {"AWS_DEFAULT_REGION": "eu-central-1"})
    boot = {k: v for k, v in worker_env(settings).items() if k.startswith("PYTHON")}
    backend = DockerBackend(
        image=IMAGE,
        concurrency=1,
        environment={**environment, **boot, "HOME": "/root", "PATH": "/usr/bin:/bin"},
        command=[sys.executable, "-c", BOOT, "worker"],
        client=docker_client,
        run_options=run_options,
    )
    [message_id] = messages.send_and_enqueue(settings, queue, handler="scaling-test-settings")
    backend.start_one(queue)
    database = get_database(settings.sqlalchemy_url)

    def result() -> Any:
        with database.session() as session:
            row = session.get(QueueMessage, message_id)
            assert row is not None
            assert row.status != "failed", (row.error, row.cause)
            return row.result if row.status == "succeeded" else None

    try:
        wait_for(lambda: result() is not None, 90, what="the container to run the message")
        assert result() == {
            "region": "eu-central-1",
            "gitlab_url": "http://gitlab.invalid",
            "gitlab_api_token": True,
            "secret_key": True,
            "egress_allow": "192.168.7.0/24",
            "redis_url": "redis://127.0.0.1:6379/3",
            "iot_cook_idle_seconds": 77.0,
            "receive_cap": 4,
            "access_keys": False,
            "aws_region": "eu-central-1",
        }
    except AssertionError:
        for container in backend.containers(queue):
            print(container.name, container.logs().decode(errors="replace")[-3000:])
        raise
    finally:
        for container in backend.containers(queue):
            container.remove(force=True)
