"""The HTTP client for outbound calls on a user's behalf: policy-checked, pinned, bounded.

* **Pinned**: the network backend resolves the host once, checks every address with the
  policy, and connects to a checked address itself; httpx keeps the URL's host name for the
  ``Host`` header, TLS SNI and certificate verification. A DNS answer that changes after the
  check (rebinding) is never used.
* **Every hop checked**: redirects are followed by :func:`request` hop by hop (up to
  ``max_redirects``), and every new connection goes through the same backend.
* **Total deadline**: every socket operation gets the time left of the call, and one that
  starts after the deadline fails; a server that drips its headers or body byte by byte is cut
  off at the deadline, not after it.
* **Size cap**: the body is streamed (decoded) and reading stops at the cap.
* No environment proxies (``trust_env=False``): a proxy would connect where we did not check.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from app.egress.addresses import IPAddress, parse
from app.egress.policy import (
    EgressError,
    EgressPolicy,
    EgressRefused,
    EgressTimeout,
    EgressTooLarge,
)

REDIRECTS = frozenset({301, 302, 303, 307, 308})

#: The monotonic deadline of the call running in this thread (None: no call, no limit).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "egress_deadline", default=None
)


def _left(timeout: float | None) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the call's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A socket stream whose every operation ends by the call's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


_resolvers: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_resolvers_lock = threading.Lock()


def _resolver_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that resolve names, so a slow DNS answer cannot outlast the deadline (one pool
    per process: a forked worker must not reuse its parent's)."""
    global _resolvers
    with _resolvers_lock:
        if _resolvers is None or _resolvers[0] != os.getpid():
            pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="egress-dns")
            _resolvers = (os.getpid(), pool)
        return _resolvers[1]


def checked_in_time(policy: EgressPolicy, host: str, port: int) -> list[IPAddress]:
    """``policy.check`` within the time the call has left."""
    left = _left(None)
    if parse(host) is not None or left is None:
        return policy.check(host, port)
    future = _resolver_pool().submit(policy.check, host, port)
    try:
        return future.result(timeout=left)
    except concurrent.futures.TimeoutError:
        raise httpcore.ConnectTimeout(f"resolving {host} outlasted the call's deadline") from None


class PinnedBackend(httpcore.NetworkBackend):
    """Resolve once, check, connect to the checked address (never to the name)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = checked_in_time(self.policy, host, port)  # refused before any connect
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address), port, _left(timeout), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _Stream(stream)
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise EgressRefused(path, 0, None, "a unix socket")


def build_client(policy: EgressPolicy) -> httpx.Client:
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=PinnedBackend(policy),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
    )
    return httpx.Client(transport=transport, trust_env=False, follow_redirects=False)


_clients: dict[tuple[int, EgressPolicy], httpx.Client] = {}
_clients_lock = threading.Lock()


def client_for(policy: EgressPolicy) -> httpx.Client:
    """One pooled client per process and policy (a forked worker builds its own)."""
    key = (os.getpid(), policy)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if len(_clients) > 16:
                _clients.clear()
            client = _clients[key] = build_client(policy)
        return client


@dataclass(frozen=True, slots=True)
class Response:
    """A response read whole (up to the cap): what callers judge and record."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes
    url: httpx.URL
    encoding: str

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")


def _unwrap(exc: BaseException) -> EgressError | None:
    """The policy error httpx/httpcore wrapped on the way up, if that is what this is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, EgressError):
            return seen
        seen = seen.__context__ or seen.__cause__
    return None


def request(
    policy: EgressPolicy,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: Any = None,
    content: bytes | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
    max_redirects: int | None = None,
) -> Response:
    """One outbound call under ``policy``. Raises :class:`EgressRefused` (destination refused,
    on any hop), :class:`EgressUnresolved`, :class:`EgressTimeout` (total deadline),
    :class:`EgressTooLarge` (body over the cap), or ``httpx.HTTPError`` for other failures."""
    total = min(timeout or policy.timeout_seconds, policy.timeout_seconds)
    cap = min(max_bytes or policy.max_response_bytes, policy.max_response_bytes)
    hops = policy.max_redirects if max_redirects is None else max_redirects
    client = client_for(policy)
    token = _deadline.set(time.monotonic() + total)
    try:
        next_request = client.build_request(
            # no empty params: httpx would drop the URL's own query string
            method,
            url,
            headers=headers,
            params=params or None,
            content=content,
            timeout=total,
        )
        for _hop in range(hops + 1):
            response = client.send(next_request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location and _hop < hops:
                    next_request = client.build_request(
                        "GET" if response.status_code == 303 else method,
                        response.url.join(location),
                        headers=headers,
                        content=None if response.status_code == 303 else content,
                        timeout=total,
                    )
                    continue
                return _read(response, cap)
            finally:
                response.close()
        raise EgressError(f"more than {hops} redirects")  # pragma: no cover - loop returns
    except httpx.TimeoutException as exc:
        raise EgressTimeout(f"{method} {_shown(url)} did not finish within {total:g} s") from exc
    except httpx.HTTPError as exc:
        inner = _unwrap(exc)
        if inner is not None:
            raise inner from None
        raise
    finally:
        _deadline.reset(token)


def _read(response: httpx.Response, cap: int) -> Response:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > cap:
            raise EgressTooLarge(
                f"the response from {_shown(str(response.url))} is larger than {cap} bytes"
            )
    return Response(
        status_code=response.status_code,
        reason_phrase=response.reason_phrase,
        headers=response.headers,
        content=bytes(body),
        url=response.url,
        encoding=response.charset_encoding or "utf-8",
    )


def _shown(url: str) -> str:
    """A URL for messages: no query string (it may carry secrets)."""
    return str(url).split("?", 1)[0]
