"""The HTTP app against real dependencies: health, readiness naming the failing part, metrics,
request ids, and GraphQL's API-key auth over HTTP and WebSocket."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.config import Settings
from app.logs import JsonFormatter
from app.main import create_app
from tests.keys import ADMIN_SECRET, KEYS, VIEWER_SECRET, auth, token
from tests.services import free_port, mosquitto

pytestmark = pytest.mark.integration

SYSTEM = "{ system { version mode components { name ok detail } } }"


@pytest.fixture
def mqtt_url(tmp_path: Path) -> Iterator[str]:
    with mosquitto(tmp_path) as url:
        yield url


@pytest.fixture
def client(
    settings_factory: Callable[..., Settings], database_url: str, mqtt_url: str
) -> Iterator[TestClient]:
    settings = settings_factory(database_url=database_url, mqtt_url=mqtt_url, access_keys=KEYS)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_healthz_and_readyz_when_everything_is_up(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert set(body["components"]) == {"database", "broker", "mqtt"}


def test_readyz_names_the_component_that_is_down(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(mqtt_url=f"mqtt://127.0.0.1:{free_port()}", access_keys=KEYS)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        viewer = client.get("/readyz", headers=auth(VIEWER_SECRET))
        admin = client.get("/readyz", headers=auth(ADMIN_SECRET))
    assert ready.status_code == viewer.status_code == admin.status_code == 503
    # Anonymous callers (and viewers) learn which component fails, not why nor where.
    for answer in (ready, viewer):
        assert answer.json()["failing"] == ["mqtt"]
        assert answer.json()["components"]["mqtt"] == {"ok": False}
        assert "127.0.0.1" not in answer.text
        assert "refused" not in answer.text.lower()
    assert "refused" in admin.json()["components"]["mqtt"]["detail"].lower()


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'smokehouse_http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32


def test_access_log_lines_are_json_with_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="smokehouse.http"):
        client.get("/readyz", headers={"x-request-id": "req-42"})
    record = next(r for r in caplog.records if r.name == "smokehouse.http")
    # The record was made inside the request; format it the way production does.
    from app.logs import request_id

    token = request_id.set("req-42")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["request_id"] == "req-42"
    assert line["status"] == 200
    assert line["msg"] == "GET /readyz 200"


def test_graphql_refuses_anonymous_and_wrong_keys(client: TestClient) -> None:
    anonymous = client.post("/graphql", json={"query": SYSTEM})
    assert anonymous.status_code == 401
    assert "session token" in anonymous.json()["detail"]
    wrong = client.post("/graphql", json={"query": SYSTEM}, headers=auth("nope"))
    assert wrong.status_code == 401
    # An access key's own secret is no bearer credential: it must not travel.
    for raw in ({"x-api-key": ADMIN_SECRET}, {"Authorization": f"Bearer {ADMIN_SECRET}"}):
        assert client.post("/graphql", json={"query": SYSTEM}, headers=raw).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": token(VIEWER_SECRET)}, auth(ADMIN_SECRET)],
)
def test_graphql_system_query_with_a_key(client: TestClient, headers: dict[str, str]) -> None:
    answer = client.post("/graphql", json={"query": SYSTEM}, headers=headers)
    assert answer.status_code == 200
    system = answer.json()["data"]["system"]
    assert system["mode"] in ("embedded", "production")
    assert {c["name"]: c["ok"] for c in system["components"]} == {
        "database": True,
        "broker": True,
        "mqtt": True,
    }


def test_graphql_websocket_needs_a_key_in_connection_init(client: TestClient) -> None:
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {}})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4403

    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"x-api-key": token(VIEWER_SECRET)}})
        assert ws.receive_json()["type"] == "connection_ack"
