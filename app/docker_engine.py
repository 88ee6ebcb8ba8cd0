"""What every caller of a Docker Engine API (Docker, or Podman's compatible socket) shares.

Containers come and go under us — a worker exits and is auto-removed, another process stops a
runner — so a lookup that races a removal means "gone", never an error. docker-py's
``ignore_removed`` only skips Docker's 404; Podman answers the same race with a 500 whose text
says "no such container", so we recognise both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import docker.errors


def is_gone(error: Exception) -> bool:
    """The engine said the container does not exist (any more)."""
    if isinstance(error, docker.errors.NotFound):
        return True
    if isinstance(error, docker.errors.APIError):
        return "no such container" in str(error.explanation or error).lower()
    return False


def find_container(client: Any, ref: str) -> Any | None:
    """The inspected container by id or name, or ``None`` when there is none."""
    try:
        return client.containers.get(ref)
    except docker.errors.APIError as error:
        if is_gone(error):
            return None
        raise


def list_containers(client: Any, filters: Mapping[str, Any], *, all: bool = True) -> list[Any]:
    """Inspected containers matching ``filters``, skipping any removed while we looked."""
    summaries = client.containers.list(all=all, filters=dict(filters), sparse=True)
    found = (find_container(client, summary.id) for summary in summaries)
    return [container for container in found if container is not None]
