"""Worker backends: local processes, Docker/Podman containers, a Kubernetes Deployment."""

from __future__ import annotations

from app.config import Settings
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
            concurrency=settings.worker.concurrency, log_dir=settings.data_dir / "workers"
        )
    if scaling.backend == "docker":
        from app.scaling.backends.docker import DockerBackend

        # Workers reach the same database and broker; DOCKER_HOST picks the engine (or Podman).
        environment = {
            "SMOKEHOUSE_DATABASE_URL": settings.sqlalchemy_url,
            "SMOKEHOUSE_BROKER_URL": settings.celery_broker_url,
            "SMOKEHOUSE_LOG_FORMAT": settings.log_format,
            "SMOKEHOUSE_HANDLER_MODULES": settings.handler_modules,
        }
        options = {"network": scaling.docker_network} if scaling.docker_network else {}
        return DockerBackend(
            image=scaling.docker_image,
            concurrency=settings.worker.concurrency,
            environment=environment,
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
