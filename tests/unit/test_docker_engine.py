"""A container removed between the engine's list and its inspect is skipped, not an error.

The race is timing-dependent against a real engine (it failed CI once, Podman answering the
inspect with a 500 "no such container"), so the engine's two answers are replayed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker.errors
import pytest
import requests

from app.docker_engine import find_container, is_gone, list_containers


def api_error(status: int, text: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    cls = docker.errors.NotFound if status == 404 else docker.errors.APIError
    return cls(f"{status} error", response=response, explanation=text)


PODMAN_GONE = api_error(500, "container abc does not exist in database: no such container")
DOCKER_GONE = api_error(404, "No such container: abc")
OTHER = api_error(500, "database is locked")


@dataclass
class Summary:
    id: str


class Containers:
    def __init__(self, alive: dict[str, str], vanished: dict[str, Exception]) -> None:
        self.alive, self.vanished = alive, vanished

    def list(self, **kwargs: Any) -> list[Summary]:
        assert kwargs["sparse"] is True
        return [Summary(i) for i in [*self.alive, *self.vanished]]

    def get(self, ref: str) -> str:
        if ref in self.vanished:
            raise self.vanished[ref]
        return self.alive[ref]


class Client:
    def __init__(self, alive: dict[str, str], vanished: dict[str, Exception]) -> None:
        self.containers = Containers(alive, vanished)


@pytest.mark.parametrize("error", [PODMAN_GONE, DOCKER_GONE])
def test_a_container_removed_while_listing_is_skipped(error: Exception) -> None:
    client = Client({"a": "A", "c": "C"}, {"b": error})
    assert list_containers(client, {"label": ["x=y"]}) == ["A", "C"]
    assert find_container(client, "b") is None


def test_other_engine_errors_still_raise() -> None:
    client = Client({"a": "A"}, {"b": OTHER})
    assert not is_gone(OTHER)
    with pytest.raises(docker.errors.APIError, match="locked"):
        list_containers(client, {})


def test_only_engine_errors_count_as_gone() -> None:
    assert is_gone(PODMAN_GONE)
    assert is_gone(DOCKER_GONE)
    assert not is_gone(RuntimeError("no such container"))
