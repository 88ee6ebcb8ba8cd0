"""One Kubernetes Deployment of workers per queue, scaled through its ``scale`` subresource.

Each autoscaled queue has its own Deployment, named from
``SMOKEHOUSE_SCALING_KUBERNETES_DEPLOYMENT`` (``{queue}`` in it is the queue's name made a valid
Kubernetes name; without ``{queue}`` the name gets ``-<queue>`` appended): one queue's replica
count never overwrites another's. Each Deployment runs ``smokehouse worker --queues=<its queue>``.

Kubernetes picks which pods go when replicas drop; we steer it with the
``controller.kubernetes.io/pod-deletion-cost`` annotation (lower cost goes first): the idle workers
``plan`` chose get a low cost just before replicas are lowered, and replicas drop by no more than
the pods that may go — those idle ones plus pods that never registered (pending or starting, which
Kubernetes removes before ready ones anyway). A busy worker's pod is never the cheapest. Pod
deletion sends SIGTERM: Celery's warm shutdown within ``terminationGracePeriodSeconds``.

Workers find their pod name through the downward API (``SMOKEHOUSE_WORKER_BACKEND_REF`` from
``metadata.name``, ``SMOKEHOUSE_WORKER_BACKEND=kubernetes``), so the registry links worker and pod.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from app.scaling.backends.base import Recorder, ScaleResult, WorkerView, no_record, plan

log = logging.getLogger("smokehouse.scaling.kubernetes")

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def deployment_name(template: str, queue: str) -> str:
    """The Deployment of ``queue``: RFC 1123 (lowercase alphanumerics and '-', 63 at most)."""
    safe = re.sub(r"[^a-z0-9-]+", "-", queue.lower()).strip("-") or "queue"
    name = template.replace("{queue}", safe) if "{queue}" in template else f"{template}-{safe}"
    return name[:63].rstrip("-")


IDLE_COST = "-1000"


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, *, namespace: str, deployment: str, api_client: Any = None) -> None:
        from kubernetes import client, config  # type: ignore[import-untyped,import-not-found,unused-ignore]

        if api_client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call,unused-ignore]
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call,unused-ignore]
            api_client = client.ApiClient()
        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.deployment = deployment

    def replicas(self, queue: str) -> int:
        name = deployment_name(self.deployment, queue)
        scale = self.apps.read_namespaced_deployment_scale(name, self.namespace)
        return int(scale.spec.replicas or 0) if scale.spec is not None else 0

    def set_replicas(self, queue: str, replicas: int) -> None:
        name = deployment_name(self.deployment, queue)
        body = {"spec": {"replicas": replicas}}
        self.apps.patch_namespaced_deployment_scale(name, self.namespace, body)
        log.info("deployment %s scaled to %d", name, replicas)

    def mark_cheap(self, pod: str) -> None:
        body = {"metadata": {"annotations": {DELETION_COST: IDLE_COST}}}
        self.core.patch_namespaced_pod(pod, self.namespace, body)

    def scale(
        self,
        queue: str,
        desired: int,
        workers: Sequence[WorkerView],
        record: Recorder = no_record,
    ) -> ScaleResult:
        """Pods get their names from Kubernetes: the Deployment's replica count is the record
        (``record`` is not called; a pod registers itself by its name)."""
        current = self.replicas(queue)
        if desired >= current:
            if desired > current:
                self.set_replicas(queue, desired)
            return ScaleResult(note=f"replicas {current} -> {desired}")
        ours = [w for w in workers if w.backend == self.name and w.backend_ref]
        registered = [w for w in ours if w.state != "draining"]
        unregistered = max(0, current - len(registered))
        todo = plan(desired, ours, self.name)
        result = ScaleResult()
        for worker in todo.stop:
            assert worker.backend_ref is not None
            self.mark_cheap(worker.backend_ref)
            result.stopped.append(worker.id)
        target = max(desired, current - unregistered - len(result.stopped))
        if target != current:
            self.set_replicas(queue, target)
        result.note = f"replicas {current} -> {target}"
        return result

    def close(self) -> None:
        self.api_client.close()
