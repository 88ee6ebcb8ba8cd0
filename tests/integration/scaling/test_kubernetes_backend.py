"""The Kubernetes backend through the official client against a small API-server stand-in that
records every request: scale subresource reads/patches and pod-deletion-cost annotations."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.scaling.backends.base import WorkerView
from app.scaling.backends.kubernetes import deployment_name

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCALE = re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)/scale$")
POD = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/?]+)$")


@dataclass
class FakeApiServer:
    deployments: dict[str, int] = field(default_factory=lambda: {"workers-default": 0})
    requests: list[tuple[str, str, str, Any]] = field(default_factory=list)  # method, path, type
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def replicas(self) -> int:
        return self.deployments["workers-default"]

    @replicas.setter
    def replicas(self, value: int) -> None:
        self.deployments["workers-default"] = value

    def scale(self, namespace: str, name: str) -> dict[str, Any]:
        replicas = self.deployments.setdefault(name, 0)
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas},
        }


@pytest.fixture
def api_server() -> Iterator[tuple[str, FakeApiServer]]:
    state = FakeApiServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def reply(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, "", None))
            match = SCALE.match(self.path.split("?")[0])
            if match:
                self.reply(state.scale(match["ns"], match["name"]))
            else:
                self.reply({"kind": "Status", "code": 404}, 404)

        def do_PATCH(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            path = self.path.split("?")[0]
            state.requests.append(("PATCH", path, self.headers["Content-Type"], body))
            if match := SCALE.match(path):
                state.deployments[match["name"]] = body["spec"]["replicas"]
                self.reply(state.scale(match["ns"], match["name"]))
            elif match := POD.match(path):
                state.annotations.setdefault(match["name"], {}).update(
                    body["metadata"]["annotations"]
                )
                self.reply({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": match["name"]}})
            else:
                self.reply({"kind": "Status", "code": 404}, 404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()


@pytest.fixture
def backend(api_server: tuple[str, FakeApiServer]) -> Iterator[Any]:
    kubernetes = pytest.importorskip("kubernetes")
    from app.scaling.backends.kubernetes import KubernetesBackend

    configuration = kubernetes.client.Configuration(host=api_server[0])
    api_client = kubernetes.client.ApiClient(configuration)
    backend = KubernetesBackend(namespace="ci", deployment="workers", api_client=api_client)
    assert deployment_name("workers", "default") == "workers-default"
    yield backend
    backend.close()


def pod(n: int, state: str = "idle", active: int = 0) -> WorkerView:
    return WorkerView(
        f"w{n}", state, active, T0 + timedelta(seconds=n), "kubernetes", f"workers-abc-{n}"
    )


def test_scale_up_patches_the_scale_subresource(
    backend: Any, api_server: tuple[str, FakeApiServer]
) -> None:
    _, state = api_server
    result = backend.scale("default", 3, [])
    assert state.replicas == 3
    method, path, content_type, body = state.requests[-1]
    assert (method, path) == (
        "PATCH",
        "/apis/apps/v1/namespaces/ci/deployments/workers-default/scale",
    )
    assert content_type in (
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    )
    assert body == {"spec": {"replicas": 3}}
    assert result.note == "replicas 0 -> 3"


def test_unchanged_count_only_reads(backend: Any, api_server: tuple[str, FakeApiServer]) -> None:
    _, state = api_server
    state.replicas = 2
    backend.scale("default", 2, [pod(1), pod(2)])
    assert [m for m, *_ in state.requests] == ["GET"]


def test_scale_down_marks_idle_pods_cheapest_and_spares_busy_ones(
    backend: Any, api_server: tuple[str, FakeApiServer]
) -> None:
    _, state = api_server
    state.replicas = 4
    workers = [pod(1, "busy", 1), pod(2), pod(3, "busy", 1), pod(4)]
    result = backend.scale("default", 0, workers)
    assert sorted(result.stopped) == ["w2", "w4"]
    assert state.annotations == {
        "workers-abc-2": {"controller.kubernetes.io/pod-deletion-cost": "-1000"},
        "workers-abc-4": {"controller.kubernetes.io/pod-deletion-cost": "-1000"},
    }
    assert state.replicas == 2  # the two busy pods stay
    patches = [path for method, path, *_ in state.requests if method == "PATCH"]
    assert patches[-1].endswith("/scale")  # annotate first, then lower replicas


def test_unregistered_pods_may_go_first(
    backend: Any, api_server: tuple[str, FakeApiServer]
) -> None:
    _, state = api_server
    state.replicas = 3  # one pod has not registered yet (pending or booting)
    backend.scale("default", 1, [pod(1, "busy", 1), pod(2, "busy", 1)])
    assert state.replicas == 2
    assert state.annotations == {}


def test_each_queue_has_its_own_deployment(
    backend: Any, api_server: tuple[str, FakeApiServer]
) -> None:
    """Before: one Deployment for every queue, so the last queue's pass set everyone's count."""
    _, state = api_server
    backend.scale("default", 3, [])
    backend.scale("gpu_jobs", 1, [])
    backend.scale("default", 3, [pod(1), pod(2), pod(3)])
    assert state.deployments == {"workers-default": 3, "workers-gpu-jobs": 1}


def test_deployment_names_are_valid_kubernetes_names() -> None:
    assert deployment_name("smokehouse-worker-{queue}", "Bulk.Jobs_2") == (
        "smokehouse-worker-bulk-jobs-2"
    )
    assert len(deployment_name("w-{queue}", "q" * 100)) == 63
