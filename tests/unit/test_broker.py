"""Worker node names: unique per process, and attributable to their host."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.broker.celery import node_name, on_host


def test_two_processes_on_one_host_get_different_node_names() -> None:
    assert node_name(None, 101) != node_name(None, 102)
    assert node_name(None, 101) == "worker-101@%h"  # Celery expands %h to the host name


def test_a_worker_id_chosen_by_the_backend_names_the_node() -> None:
    assert node_name("vm-7-abc", 1) == "vm-7-abc@%h"


@given(
    name=st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
    host=st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True),
)
def test_on_host_matches_only_the_host_part(name: str, host: str) -> None:
    assert on_host(f"{name}@{host}", host)
    assert not on_host(f"{name}@{host}x", host)
