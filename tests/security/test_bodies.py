"""Big and deep bodies, on every route class: the caller is checked before the body is read, and
no class reads more than its cap.

* 100 MB without a credential, declared (``Content-Length``) and chunked: refused (401, or the
  AWS authentication error) with **no chunk of the body pulled**.
* 100 MB with a credential: declared → 413 with no chunk pulled; chunked → 413 once the cap is
  passed (at most the cap plus one chunk pulled, the rest never produced).
* Deeply nested JSON and GraphQL: refused without a key without being read; with a key a clear
  4xx (or a GraphQL error), never a 5xx.
* Over a real socket (uvicorn): 100 MB streamed chunked to the work-queue route and to GraphQL
  without a key is answered 401 at once; the client's generator is not drained (only what fits
  in the socket buffers was produced) and the server's RSS does not grow by the body's size.
"""

from __future__ import annotations

import json
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.frontdoor import (
    AWS_MAX_BYTES,
    GRAPHQL_MAX_BYTES,
    LOGIN_MAX_BYTES,
    PUBLIC_MAX_BYTES,
    QUEUE_MAX_BYTES,
)
from app.main import create_app
from tests.keys import ADMIN, KEYS, token
from tests.security.frontdoor import AUTH_CODES, Answer, Body, build_client, call, sigv4_headers
from tests.services import free_port, migrated_sqlite, wait_for

pytestmark = pytest.mark.integration

MB = 1024 * 1024
BIG = 100 * MB
CHUNK = 64 * 1024
HOOK_TOKEN = "hook-body-test-9Xq2Wv5Lm8Rt3Kz6"
WEBHOOK_MAX = 256 * 1024


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with build_client(
        tmp_path_factory.mktemp("bodies"), gitlab_webhook_token=HOOK_TOKEN
    ) as test_client:
        yield test_client


def big(declared: bool) -> Body:
    return Body(chunk=b"x" * CHUNK, count=BIG // CHUNK, declared=declared)


AWS_TARGET = "AWSEvents.PutEvents"
#: route class -> (method, path, headers of an anonymous caller, headers of a known one, cap)
ROUTES: dict[str, tuple[str, str, list[tuple[str, str]], list[tuple[str, str]], int]] = {
    "aws": (
        "POST",
        "/",
        [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", AWS_TARGET)],
        [],  # signed per request below
        AWS_MAX_BYTES,
    ),
    "graphql": (
        "POST",
        "/graphql",
        [("content-type", "application/json")],
        [("content-type", "application/json"), ("authorization", f"Bearer {token(ADMIN)}")],
        GRAPHQL_MAX_BYTES,
    ),
    "queues": (
        "POST",
        "/queues/default/messages",
        [("content-type", "application/json")],
        [("content-type", "application/json"), ("authorization", f"Bearer {token(ADMIN)}")],
        QUEUE_MAX_BYTES,
    ),
    "webhook": (
        "POST",
        "/webhooks/gitlab",
        [("content-type", "application/json"), ("x-gitlab-event", "Job Hook")],
        [
            ("content-type", "application/json"),
            ("x-gitlab-event", "Job Hook"),
            ("x-gitlab-token", HOOK_TOKEN),
        ],
        WEBHOOK_MAX,
    ),
    "dashboard": (
        "GET",
        "/ui/session",
        [],
        [("authorization", f"Bearer {token(ADMIN)}")],
        PUBLIC_MAX_BYTES,
    ),
}
#: Routes anyone may call: capped all the same.
PUBLIC: dict[str, tuple[str, str, int]] = {
    "login": ("POST", "/auth/session", LOGIN_MAX_BYTES),
    "public": ("POST", "/healthz", PUBLIC_MAX_BYTES),
}


def aws_signed(body: bytes, declared_length: int | None = None) -> list[tuple[str, str]]:
    # A signed request whose body is not the signed one (the signature would fail after the
    # read; the cap must refuse it before).
    headers = sigv4_headers(ADMIN, AWS_TARGET, body, "events")
    return [(k, v) for k, v in headers if k.lower() != "x-amz-content-sha256"]


def refused_anonymously(route_class: str, answer: Answer) -> None:
    if route_class == "aws":
        assert answer.aws_code == "MissingAuthenticationTokenException", answer.body
    else:
        assert answer.status == 401, answer.body


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route_class", sorted(ROUTES))
def test_100mb_without_a_credential_is_refused_unread(
    client: TestClient, route_class: str, declared: bool
) -> None:
    method, path, anonymous, _, _ = ROUTES[route_class]
    started = time.monotonic()
    answer = call(client, method, path, anonymous, big(declared))
    refused_anonymously(route_class, answer)
    assert answer.pulled == 0, f"{answer.pulled_bytes} bytes read before the caller was known"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route_class", sorted(ROUTES) + sorted(PUBLIC))
def test_100mb_with_a_credential_stops_at_the_cap(
    client: TestClient, route_class: str, declared: bool
) -> None:
    if route_class in PUBLIC:
        method, path, cap = PUBLIC[route_class]
        headers: list[tuple[str, str]] = [("content-type", "application/json")]
    else:
        method, path, _, headers, cap = ROUTES[route_class]
        if route_class == "aws":
            headers = aws_signed(b"{}")
    started = time.monotonic()
    answer = call(client, method, path, headers, big(declared))
    if answer.status != 413:  # a route that takes no body may answer without reading it
        assert route_class in ("dashboard", "public"), answer.body
        assert answer.status < 500
        assert answer.pulled == 0
        return
    if route_class == "aws":
        assert answer.aws_code == "RequestEntityTooLargeException"
    if declared:
        assert answer.pulled == 0  # Content-Length over the cap: refused at once
    else:
        assert answer.pulled_bytes <= cap + CHUNK, answer.pulled_bytes
    assert time.monotonic() - started < 2


def nested_json(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def nested_graphql(depth: int) -> bytes:
    query = "{ " + "system { " * depth + "version" + " }" * depth + " }"
    return json.dumps({"query": query}).encode()


DEEP = {
    "aws": nested_json(50_000),
    "graphql": nested_graphql(3_000),
    "queues": b'{"handler": "x", "payload": ' + nested_json(50_000) + b"}",
    "webhook": nested_json(50_000),
}


@pytest.mark.parametrize("route_class", sorted(DEEP))
def test_deep_bodies_without_a_credential_are_refused_unread(
    client: TestClient, route_class: str
) -> None:
    method, path, anonymous, _, _ = ROUTES[route_class]
    answer = call(client, method, path, anonymous, Body(chunk=DEEP[route_class], count=2))
    refused_anonymously(route_class, answer)
    assert answer.pulled == 0


@pytest.mark.parametrize("route_class", sorted(DEEP))
def test_deep_bodies_with_a_credential_get_a_clear_refusal(
    client: TestClient, route_class: str
) -> None:
    method, path, _, headers, cap = ROUTES[route_class]
    payload = DEEP[route_class]
    if route_class == "aws":
        headers = sigv4_headers(ADMIN, AWS_TARGET, payload, "events")
    answer = call(client, method, path, headers, payload)
    assert 400 <= answer.status < 500 or answer.status == 200, answer.body
    if len(payload) > cap:
        assert answer.status == 413
    elif route_class == "graphql":
        assert answer.status in (200, 400)
        assert answer.json().get("errors"), answer.body
    elif route_class == "aws":
        assert answer.aws_code == "SerializationException", answer.body
    assert answer.aws_code not in AUTH_CODES


@pytest.mark.parametrize("depth", [11, 200])
def test_deep_graphql_under_the_cap_is_refused_before_it_runs(
    client: TestClient, depth: int
) -> None:
    """Past MAX_DEPTH (10) strawberry's depth limit refuses it; far past, the parser does."""
    method, path, _, headers, _ = ROUTES["graphql"]
    nested = "{ events(limit: 1) { " + "deliveries { event { " * depth + "id" + " } }" * depth
    answer = call(client, method, path, headers, json.dumps({"query": nested + " } }"}).encode())
    assert answer.status == 200
    message = answer.json()["errors"][0]["message"]
    assert "exceeds maximum operation depth" in message or "nested too deeply" in message


# --- over a real socket --------------------------------------------------------------------------


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    from app.config import load_settings

    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=migrated_sqlite(tmp_path / "socket.db"),
        http_port=free_port(),
        embedded_mqtt_port=free_port(),
        log_format="console",
        access_keys=KEYS,
    )
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    wait_for(lambda: uv.started, timeout=20, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("path", ["/queues/default/messages", "/graphql"])
def test_100mb_chunked_over_a_socket_without_a_key(server: str, path: str) -> None:
    produced = 0

    def stream() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(BIG // CHUNK):
            produced += CHUNK
            yield b"x" * CHUNK

    before = rss_kib()
    started = time.monotonic()
    try:
        answer: Any = httpx.post(f"{server}{path}", content=stream(), timeout=30)
        status = answer.status_code
    except httpx.HTTPError:  # the server answered and closed while we were still sending
        status = None
    elapsed = time.monotonic() - started
    grown = rss_kib() - before
    print(
        f"\n{path}: {status} after {elapsed:.2f}s, {produced // MB} MB produced, RSS +{grown} KiB"
    )
    assert status in (401, None)
    assert elapsed < 10
    # The server answered without draining the stream: what was produced fits in the socket
    # buffers (a few MB), not the 100 MB the client had to send.
    assert produced < 16 * MB, f"{produced // MB} MB of the body were read"
    assert grown < 50 * 1024, f"RSS grew by {grown} KiB"


def test_a_websocket_message_over_the_cap_closes_the_socket(client: TestClient) -> None:
    """graphql-transport-ws messages are capped like GraphQL bodies (close code 1009)."""
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"x-api-key": token(ADMIN)}})
        assert ws.receive_json()["type"] == "connection_ack"
        query = "subscription { alarms { id } }"
        huge = {"query": query, "variables": {"pad": "y" * (GRAPHQL_MAX_BYTES + 1)}}
        ws.send_json({"id": "1", "type": "subscribe", "payload": huge})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1009
