"""Pinning for libraries that connect by themselves through urllib3 (``requests``, which
Apprise's HTTP plugins use).

Inside ``with pinned(policy) as refusals:``, every new urllib3 connection of this context
(Apprise copies the context into its worker threads) resolves the host once, checks every
address with the policy and connects only to a checked address; TLS still verifies the host
name. A refused address, on the first hop or on any redirect, fails that connection before it
is made and is recorded in ``refusals``. Outside the block urllib3 behaves as always (boto3 and
others are untouched).

A proxy from the environment (``HTTP_PROXY``) is what urllib3 connects to then: the proxy's
address is checked, not the target's — leave proxies unset for notification workers, or
allow-list the proxy and trust it.
"""

from __future__ import annotations

import contextvars
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3.util.connection as urllib3_connection
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from app.egress.policy import EgressError, EgressPolicy

_active: contextvars.ContextVar[tuple[EgressPolicy, list[str]] | None] = contextvars.ContextVar(
    "egress_pinned", default=None
)
_original = urllib3_connection.create_connection
_install_lock = threading.Lock()
_installed = False


class RefusedConnection(OSError):
    """The policy refused the address (an OSError, so the library reports a failed send)."""


def _pinned_create_connection(
    address: tuple[str, int],
    timeout: Any = _DEFAULT_TIMEOUT,
    source_address: tuple[str, int] | None = None,
    socket_options: list[tuple[int, int, int | bytes]] | None = None,
) -> socket.socket:
    active = _active.get()
    if active is None:
        return _original(address, timeout, source_address, socket_options)
    policy, refusals = active
    host, port = address
    try:
        checked = policy.check(host.strip("[]"), port)
    except EgressError as exc:
        refusals.append(str(exc))
        raise RefusedConnection(str(exc)) from None
    error: OSError | None = None
    for ip in checked:
        try:
            return _original((str(ip), port), timeout, source_address, socket_options)
        except OSError as exc:
            error = exc
    assert error is not None
    raise error


def _install() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            urllib3_connection.create_connection = _pinned_create_connection
            _installed = True


@contextmanager
def pinned(policy: EgressPolicy) -> Iterator[list[str]]:
    """urllib3 connections in this context go through ``policy``; yields the refusals."""
    _install()
    refusals: list[str] = []
    token = _active.set((policy, refusals))
    try:
        yield refusals
    finally:
        _active.reset(token)
