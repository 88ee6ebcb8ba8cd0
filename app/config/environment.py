"""The environment a worker started by a scaling backend gets: the whole settings tree.

A worker in a container (docker backend) or a pod (kubernetes) reads its settings from the
environment like any role; it needs everything a worker does -- database and broker, Redis,
MQTT, GitLab's API, the region and account, IoT and alarm settings, the egress policy, the
secret key (runner tokens are resolved on workers), handler modules -- so the autoscaler hands
down *its own* settings, every field of every section, in one pass rather than a hand-kept list
that forgets the next setting. Left out, on purpose:

* what belongs to one process: its data dir, HTTP and embedded-MQTT ports, worker identity (the
  backend sets ``SMOKEHOUSE_WORKER_ID``/``_BACKEND``), ingest's client id and metrics port;
* what a worker must not hold: API access keys and GitLab webhook tokens (only the API checks
  them).

AWS's and Docker's standard variables (``AWS_*``, ``DOCKER_HOST``) pass through from this
process's environment: runners use them to reach EC2 and the container engine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings

from app.config import ENV_PREFIX, Settings

#: (section path, field) pairs a worker does not get; the root section's path is "".
NOT_HANDED_DOWN = frozenset(
    {
        ("", "data_dir"),
        ("", "http_host"),
        ("", "http_port"),
        ("", "embedded_mqtt_port"),
        ("", "access_keys"),
        ("gitlab", "webhook_token"),
        ("gitlab", "webhook_tokens"),
        ("worker", "id"),
        ("worker", "backend"),
        ("worker", "backend_ref"),
        ("iot", "client_id"),
        ("iot", "metrics_port"),
    }
)
PASS_THROUGH_PREFIXES = ("AWS_",)
PASS_THROUGH_NAMES = ("DOCKER_HOST", "TZ")


def _text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | dict | tuple | frozenset | set):
        return json.dumps(sorted(value) if isinstance(value, frozenset | set) else value)
    return str(value)


def _walk(model: BaseModel, prefix: str, path: str, out: dict[str, str]) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseSettings):
            sub_prefix = str(value.model_config.get("env_prefix", ""))
            _walk(value, sub_prefix, f"{path}.{name}".strip("."), out)
            continue
        if value is None or (path.rpartition(".")[2], name) in NOT_HANDED_DOWN:
            continue
        out[f"{prefix}{name}".upper()] = _text(value)


def worker_environment(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``SMOKEHOUSE_*`` (and AWS/Docker) variables that give a new worker these settings."""
    out: dict[str, str] = {}
    _walk(settings, ENV_PREFIX, "", out)
    # Unset URLs mean "embedded" only inside this process's data dir: hand down what they are.
    out[f"{ENV_PREFIX}DATABASE_URL"] = settings.sqlalchemy_url
    out[f"{ENV_PREFIX}BROKER_URL"] = settings.celery_broker_url
    source = os.environ if environ is None else environ
    for name, value in source.items():
        if name.startswith(PASS_THROUGH_PREFIXES) or name in PASS_THROUGH_NAMES:
            out[name] = value
    return out
