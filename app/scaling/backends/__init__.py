"""Worker backends: local processes, Docker/Podman containers, a Kubernetes Deployment."""

from __future__ import annotations

from app.config import Settings
from app.config.environment import worker_environment
from app.scaling.backends.base import (
    Backend,
    NoBackend,
    Recorder,
    ScaleResult,
    Started,
    WorkerView,
    plan,
)
from app.scaling.settings import ScalingSettings


def create_backend(settings: Settings, scaling: ScalingSettings) -> Backend:
    """The backend named by ``SMOKEHOUSE_SCALING_BACKEND``."""
    if scaling.backend == "process":
        from app.scaling.backends.process import ProcessBackend

        return ProcessBackend(
            concurrency=settings.worker.concurrency,
            log_dir=settings.data_dir / "workers",
            commands=scaling.command_map,
        )
    if scaling.backend == "docker":
        from app.scaling.backends.docker import DockerBackend

        # Workers get the whole configuration; DOCKER_HOST picks the engine (or Podman).
        options = {"network": scaling.docker_network} if scaling.docker_network else {}
        return DockerBackend(
            image=scaling.docker_image,
            concurrency=settings.worker.concurrency,
            environment=worker_environment(settings),
            run_options=options,
        )
    if scaling.backend == "kubernetes":
        from app.scaling.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(
            namespace=scaling.kubernetes_namespace, deployment=scaling.kubernetes_deployment
        )
    return NoBackend()


__all__ = [
    "Backend",
    "NoBackend",
    "Recorder",
    "ScaleResult",
    "Started",
    "WorkerView",
    "create_backend",
    "plan",
]
