"""CI job containers through the Docker Engine API (``docker`` library).

The same calls work against Docker and Podman's Docker-compatible API (``DOCKER_HOST``, e.g.
``unix:///run/podman/podman.sock``). One container runs one job: it is started detached with
labels, CPU/memory limits and a timeout label; it is *not* auto-removed, so its logs can be
captured when the job ends; ``stop`` then removes it. Everything we start carries
``smokehouse:managed=runner``, which is how ``list_ours`` and the reconcile loop find leftovers
after a restart without ever touching anybody else's containers.

Starting is idempotent by container name (callers derive the name from the job id): a second
``start`` with the same name returns the existing container, never a second one.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import docker.errors
import requests

from app.docker_engine import find_container, list_containers

log = logging.getLogger("smokehouse.runners.containers")

MANAGED_LABEL = "smokehouse:managed"
MANAGED_VALUE = "runner"
TIMEOUT_LABEL = "smokehouse:timeout-seconds"
LOG_TAIL_BYTES = 65536
STOP_GRACE_SECONDS = 5

# Docker's own rule for container names.
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
MEMORY = re.compile(r"^[1-9][0-9]*[bkmg]?$", re.IGNORECASE)
NETWORK_MODES = ("host", "none", "bridge")
# Podman's words for Docker's states, so callers see one vocabulary.
PODMAN_STATUS = {"stopped": "exited", "configured": "created", "initialized": "created"}


class ContainerError(Exception):
    """The engine is unreachable, the image is missing, or the spec is bad — said plainly."""


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: list[str] | None
    environment: dict[str, str]
    labels: dict[str, str]
    cpus: float | None
    memory: str | None  # Docker's notation: "512m", "2g", bytes
    timeout_seconds: int
    network: str | None = None
    # Additions: bind mounts ({host path: {"bind": path, "mode": "ro"|"rw"}}) and working dir.
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    working_dir: str | None = None


@dataclass(frozen=True)
class RunningContainer:
    id: str
    name: str
    labels: dict[str, str]
    status: str  # Docker's words: created, running, paused, restarting, exited, dead
    started_at: datetime | None
    exit_code: int | None  # None while it has not exited

    @property
    def timeout_seconds(self) -> int | None:
        try:
            return int(self.labels[TIMEOUT_LABEL])
        except (KeyError, ValueError):
            return None

    def is_expired(self, now: datetime) -> bool:
        """Running for longer than its timeout label allows."""
        timeout = self.timeout_seconds
        if self.status != "running" or self.started_at is None or timeout is None:
            return False
        return _aware(now) - self.started_at > timedelta(seconds=timeout)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """The ``containers.create`` keyword arguments for a spec; ContainerError if it is bad.

    Pure, so the mapping is tested without an engine. Our labels win over the spec's, so a
    profile cannot hide a container from the reconcile loop.
    """
    problems: list[str] = []
    if not NAME.match(spec.name):
        problems.append(f"name {spec.name!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    if not spec.image.strip() or any(c.isspace() for c in spec.image):
        problems.append(f"image {spec.image!r} is not an image reference")
    if spec.cpus is not None and not 0 < spec.cpus <= 1024:
        problems.append(f"cpus must be > 0, got {spec.cpus}")
    if spec.memory is not None and not MEMORY.match(spec.memory.strip()):
        problems.append(f"memory {spec.memory!r} must look like 512m, 2g or a byte count")
    if spec.timeout_seconds <= 0:
        problems.append(f"timeout_seconds must be > 0, got {spec.timeout_seconds}")
    if spec.command is not None and (not spec.command or not all(spec.command)):
        problems.append("command must be None (image default) or a non-empty list of arguments")
    if problems:
        raise ContainerError(f"bad container spec for {spec.name!r}: " + "; ".join(problems))
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command) if spec.command is not None else None,
        "name": spec.name,
        "detach": True,
        "environment": dict(spec.environment),
        "labels": {
            **spec.labels,
            MANAGED_LABEL: MANAGED_VALUE,
            TIMEOUT_LABEL: str(spec.timeout_seconds),
        },
    }
    if spec.cpus is not None:
        kwargs["nano_cpus"] = round(spec.cpus * 1_000_000_000)
    if spec.memory is not None:
        kwargs["mem_limit"] = spec.memory.strip().lower()
    if spec.network in NETWORK_MODES or (spec.network or "").startswith("container:"):
        kwargs["network_mode"] = spec.network
    elif spec.network:
        kwargs["network"] = spec.network
    if spec.volumes:
        kwargs["volumes"] = {host: dict(bind) for host, bind in spec.volumes.items()}
    if spec.working_dir:
        kwargs["working_dir"] = spec.working_dir
    return kwargs


def parse_engine_time(value: object) -> datetime | None:
    """Docker/Podman timestamps (RFC 3339, nanoseconds); their zero time means never."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$", value)
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        return datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(UTC)
    except ValueError:
        return None


def view(container: Any) -> RunningContainer:
    """What we need of an inspected container."""
    attrs: dict[str, Any] = container.attrs
    state = attrs.get("State") or {}
    status = str(state.get("Status") or container.status or "unknown").lower()
    status = PODMAN_STATUS.get(status, status)
    exit_code = state.get("ExitCode")
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return RunningContainer(
        id=str(container.id),
        name=str(attrs.get("Name") or container.name or "").lstrip("/"),
        labels=dict(labels),
        status=status,
        started_at=parse_engine_time(state.get("StartedAt")),
        exit_code=(
            int(exit_code) if exit_code is not None and status in ("exited", "dead") else None
        ),
    )


class ContainerRunners:
    """Start, find, stop and clean up job containers. Thread-safe."""

    def __init__(
        self, client: Any | None = None, *, stop_grace_seconds: int = STOP_GRACE_SECONDS
    ) -> None:
        """``client`` is a ``docker.DockerClient``; None → ``docker.from_env()`` on first use."""
        self._client = client
        self.stop_grace_seconds = stop_grace_seconds
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                with _engine("connect to the container engine"):
                    self._client = docker.from_env()
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _find(self, ref: str) -> Any | None:
        with _engine(f"look up container {ref}"):
            return find_container(self.client, ref)

    def start(self, spec: ContainerSpec) -> RunningContainer:
        """Start a container for one job, detached; the existing one if the name is taken."""
        kwargs = run_kwargs(spec)
        existing = self._find(spec.name)
        if existing is not None:
            log.info("container %s already exists (%s)", spec.name, existing.short_id)
            if view(existing).status == "created":  # a previous start died before starting it
                return self._start(existing, spec)
            return view(existing)
        self._ensure_image(spec.image)
        with _engine(f"create container {spec.name}"):
            try:
                container = self.client.containers.create(**kwargs)
            except docker.errors.APIError:
                # Lost a race with another start of the same job? (Docker answers 409, Podman
                # 500 "name is already in use".) Then that container is the one.
                raced = self._find(spec.name)
                if raced is not None:
                    return view(raced)
                raise
        return self._start(container, spec)

    def _start(self, container: Any, spec: ContainerSpec) -> RunningContainer:
        """Start a created container; one that cannot start is removed, not left behind."""
        try:
            with _engine(f"start container {spec.name}"):
                container.start()
                container.reload()
        except ContainerError:
            with _engine(f"remove container {spec.name} that failed to start"):
                container.remove(force=True)
            raise
        log.info("started container %s (%s) from %s", spec.name, container.short_id, spec.image)
        return view(container)

    def _ensure_image(self, image: str) -> None:
        with _engine(f"look up image {image}"):
            try:
                self.client.images.get(image)
                return
            except docker.errors.ImageNotFound:
                pass
        try:
            log.info("image %s not present, pulling", image)
            self.client.images.pull(image)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise ContainerError(
                f"image {image} not found locally and cannot be pulled: {_reason(exc)}"
            ) from None

    def stop(self, ref: str, *, remove: bool = True) -> str | None:
        """Stop (short grace), capture the logs' tail (≤ 64 KiB), remove.

        Returns the logs, or None when the container is already gone; safe to call again.
        """
        container = self._find(ref)
        if container is None:
            return None
        try:
            with _engine(f"stop container {ref}"):
                container.stop(timeout=self.stop_grace_seconds)
            text = self._tail(container, LOG_TAIL_BYTES)
            if remove:
                with _engine(f"remove container {ref}"):
                    container.remove(force=True)
        except ContainerError:
            if self._find(ref) is None:  # removed under us by another stop: that is done too
                return None
            raise
        log.info("stopped container %s%s", ref, " and removed it" if remove else "")
        return text

    def list_ours(self) -> list[RunningContainer]:
        """Every container labelled ``smokehouse:managed=runner``, any status."""
        with _engine("list containers"):
            found = list_containers(self.client, {"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"})
        return [view(c) for c in found]

    def logs(self, ref: str, tail_bytes: int = LOG_TAIL_BYTES) -> str:
        """The last ``tail_bytes`` of the container's stdout and stderr."""
        container = self._find(ref)
        if container is None:
            raise ContainerError(f"no container {ref}")
        return self._tail(container, tail_bytes)

    @staticmethod
    def _tail(container: Any, tail_bytes: int) -> str:
        with _engine(f"read the logs of {container.name}"):
            raw: bytes = container.logs(stdout=True, stderr=True, tail=max(1, tail_bytes // 16))
        return raw[-tail_bytes:].decode("utf-8", errors="replace") if tail_bytes > 0 else ""

    def expired(self, now: datetime) -> list[RunningContainer]:
        """Our running containers that have run longer than their timeout label."""
        return [c for c in self.list_ours() if c.is_expired(now)]


def _reason(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip() or type(exc).__name__


@contextmanager
def _engine(what: str) -> Iterator[None]:
    """Engine failures as ContainerError saying what we were doing."""
    try:
        yield
    except ContainerError:
        raise
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise ContainerError(f"container engine unreachable (could not {what}): {exc}") from None
    except docker.errors.DockerException as exc:
        message = _reason(exc)
        if "Error while fetching server API version" in message or "Connection" in message:
            raise ContainerError(
                f"container engine unreachable (could not {what}; check DOCKER_HOST): {message}"
            ) from None
        raise ContainerError(f"could not {what}: {message}") from None
    except requests.exceptions.RequestException as exc:
        raise ContainerError(f"could not {what}: {exc}") from None
