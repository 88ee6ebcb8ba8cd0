"""Worker registry and autoscaler settings (``SMOKEHOUSE_SCALING_*``)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from app.config.section import section_config

PREFIX = "SMOKEHOUSE_SCALING_"
Backend = Literal["none", "process", "docker", "kubernetes"]


class ScalingSettings(BaseSettings):
    """Worker registry and autoscaler configuration."""

    model_config = section_config(PREFIX)

    liveness_seconds: float = Field(
        default=30.0, gt=0, description="A worker is alive while its heartbeat is younger."
    )
    heartbeat_seconds: float = Field(default=5.0, gt=0, description="Worker heartbeat interval.")
    interval_seconds: float = Field(default=10.0, gt=0, description="Autoscaler loop period.")
    backend: Backend = Field(default="none", description="Who starts and stops workers.")
    queues: str = Field(default="default", description="Comma-separated queues to autoscale.")
    sqs_queues: str = Field(
        default="",
        description="Comma-separated pool=sqs-queue-name: those pools are sized from the SQS "
        "queue's depth (visible + in flight) instead of the broker's.",
    )
    commands: Annotated[tuple[tuple[str, str], ...], NoDecode] = Field(
        default=(),
        description='JSON {"pool": "command line"}: pools whose workers are a program of '
        "yours (an SQS poller) instead of `smokehouse worker`; the process backend starts it "
        "under `smokehouse scaling exec`, which keeps it in the worker registry.",
    )
    min_workers: int = Field(default=0, ge=0)
    max_workers: int = Field(default=4, ge=1)
    target_backlog_per_worker: float | None = Field(default=None, gt=0)
    target_latency_seconds: float | None = Field(default=None, gt=0)
    stabilization_seconds: float = Field(default=300.0, ge=0)
    idle_cooldown_seconds: float = Field(default=300.0, ge=0)
    message_sweep_grace_seconds: float = Field(
        default=60.0, gt=0, description="A queued message not picked up this long is re-sent."
    )
    docker_image: str = Field(default="smokehouse:latest")
    docker_network: str | None = None
    kubernetes_namespace: str = "default"
    kubernetes_deployment: str = Field(
        default="smokehouse-worker-{queue}",
        description="Each queue's Deployment; {queue} is the queue (appended when absent).",
    )

    @field_validator("commands", mode="before")
    @classmethod
    def _commands_json(cls, value: object) -> object:
        """A JSON object from the environment (empty: none), or a mapping; kept as sorted
        pairs so the settings stay hashable (see :attr:`command_map`)."""
        if isinstance(value, str):
            if not value.strip():
                return ()
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f'not JSON ({error.msg}); write {{"pool": "command"}}') from None
        if isinstance(value, dict):
            return tuple(sorted(value.items()))
        if isinstance(value, list | tuple) and all(isinstance(v, list | tuple) for v in value):
            return tuple(value)
        raise ValueError('must be a JSON object: {"pool": "command line"}')

    @model_validator(mode="after")
    def _commands_run_as_processes(self) -> ScalingSettings:
        if self.commands and self.backend not in ("process", "none"):
            raise ValueError(
                f"SMOKEHOUSE_SCALING_COMMANDS needs the process backend, not {self.backend!r}: "
                "a container or pod runs the smokehouse image's worker (build an image for your "
                "program and point a pool of its own at it)"
            )
        for pool, command in self.commands:
            if not command.strip():
                raise ValueError(f"SMOKEHOUSE_SCALING_COMMANDS: pool {pool!r} has an empty command")
        return self

    @property
    def command_map(self) -> dict[str, str]:
        """Pool → the command line its workers run (``commands``)."""
        return dict(self.commands)

    @property
    def queue_list(self) -> list[str]:
        return [q.strip() for q in self.queues.split(",") if q.strip()]

    @property
    def sqs_queue_map(self) -> dict[str, str]:
        """Pool → SQS queue name, from ``sqs_queues`` (``pool=name``; a bare name is both)."""
        pairs: dict[str, str] = {}
        for item in self.sqs_queues.split(","):
            pool, _, name = item.strip().partition("=")
            if pool.strip():
                pairs[pool.strip()] = (name or pool).strip()
        return pairs
