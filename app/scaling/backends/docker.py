"""Worker containers through the Docker Engine API (``docker`` library) — Podman's
Docker-compatible API works the same (``DOCKER_HOST=unix:///run/podman/podman.sock``).

Every container we start carries labels, so the backend finds its own again after a restart and
never touches anything else: ``io.smokehouse.role=worker``, ``io.smokehouse.queue=<queue>`` and
``io.smokehouse.worker-id=<id>`` (the id the worker registers under, passed as
``SMOKEHOUSE_WORKER_ID``). The image's entrypoint is ``smokehouse``, so the command is
``worker --queues=<queue> --concurrency=<n>``.

Scale-down sends SIGTERM to idle workers only (Celery's warm shutdown) and does not wait: the
container exits by itself and is removed on a later pass, so one slow drain never blocks the loop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from app.docker_engine import is_gone, list_containers
from app.scaling.backends.base import Recorder, ScaleResult, Started, WorkerView, no_record, plan

log = logging.getLogger("smokehouse.scaling.docker")

ROLE = "io.smokehouse.role"
QUEUE = "io.smokehouse.queue"
WORKER_ID = "io.smokehouse.worker-id"


class DockerBackend:
    name = "docker"

    def __init__(
        self,
        *,
        image: str,
        concurrency: int,
        environment: Mapping[str, str] | None = None,
        command: Sequence[str] = ("worker",),
        client: Any = None,
        run_options: Mapping[str, Any] | None = None,
    ) -> None:
        if client is None:
            import docker  # type: ignore[import-untyped,import-not-found,unused-ignore]

            client = docker.from_env()
        self.client = client
        self.image = image
        self.concurrency = concurrency
        self.environment = dict(environment or {})
        self.command = list(command)
        self.run_options = dict(run_options or {})

    def containers(self, queue: str | None = None) -> list[Any]:
        """Our worker containers (optionally of one queue, running or not), found by label."""
        labels = [f"{ROLE}=worker"] + ([f"{QUEUE}={queue}"] if queue else [])
        return list_containers(self.client, {"label": labels})

    def remove_exited(self, queue: str) -> int:
        removed = 0
        for container in self.containers(queue):
            if container.status in ("exited", "dead", "stopped"):
                try:
                    container.remove(force=True)
                except Exception as error:  # removed by someone else meanwhile: just as good
                    if not is_gone(error):
                        raise
                removed += 1
        return removed

    def start_one(self, queue: str, record: Recorder = no_record) -> Started:
        worker_id = f"ctr-{queue}-{uuid.uuid4().hex[:10]}"
        record(worker_id)
        environment = {
            **self.environment,
            "SMOKEHOUSE_WORKER_ID": worker_id,
            "SMOKEHOUSE_WORKER_BACKEND": self.name,
        }
        container = self.client.containers.run(
            self.image,
            command=[*self.command, f"--queues={queue}", f"--concurrency={self.concurrency}"],
            detach=True,
            name=f"smokehouse-{worker_id}",
            labels={ROLE: "worker", QUEUE: queue, WORKER_ID: worker_id},
            environment=environment,
            **self.run_options,
        )
        log.info("started container %s for %s", container.short_id, queue)
        return Started(worker_id, str(container.id))

    def stop_one(self, worker: WorkerView) -> bool:
        matches = list_containers(self.client, {"label": [f"{WORKER_ID}={worker.id}"]}, all=False)
        for container in matches:
            container.kill(signal="SIGTERM")  # warm shutdown; we do not wait for the drain
            log.info("asked container %s (%s) to stop", container.short_id, worker.id)
        return bool(matches)

    def scale(
        self,
        queue: str,
        desired: int,
        workers: Sequence[WorkerView],
        record: Recorder = no_record,
    ) -> ScaleResult:
        self.remove_exited(queue)
        todo = plan(desired, workers, self.name)
        result = ScaleResult()
        for _ in range(todo.start):
            result.started.append(self.start_one(queue, record))
        for worker in todo.stop:
            if self.stop_one(worker):
                result.stopped.append(worker.id)
        return result

    def close(self) -> None:
        self.client.close()
