"""What the API refuses before running anything (too deep, too many aliases, too costly), what
it still answers (the dashboard's heaviest queries, GraphiQL's introspection), CORS, the
dashboard's static serving beside the AWS API on ``/``, and subscriptions counting themselves
out when a WebSocket client is killed mid-stream."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from graphql import get_introspection_query, parse
from hypothesis import given
from hypothesis import strategies as st

from app.config import Settings
from app.graphql.limits import (
    DEFAULT_LIST_SIZE,
    MAX_ALIASES,
    MAX_COST,
    MAX_DEPTH,
    MAX_TOKENS,
    CostTooHigh,
    query_cost,
)
from app.graphql.schema import schema
from app.graphql.subscriptions import active_subscriptions
from app.main import create_app
from tests.keys import ADMIN_SECRET, KEYS, VIEWER_SECRET, auth, token
from tests.services import ROOT, require_redis, wait_for

GRAPHQL = schema._schema


def cost(query: str, **variables: Any) -> int:
    return query_cost(GRAPHQL, parse(query), variables)


# --- the cost estimate (pure) -----------------------------------------------------------------


def test_cost_counts_fields_and_multiplies_lists_by_their_size() -> None:
    assert cost("{ system { version mode } }") == 3
    assert cost("{ events(limit: 5) { id source } }") == 1 + 5 * 2
    assert cost("query($n: Int!) { events(limit: $n) { id } }", n=40) == 1 + 40
    assert cost("{ events { id } }") == 1 + 50  # the argument's default
    assert cost("{ buses { name } }") == 1 + DEFAULT_LIST_SIZE  # no size argument
    nested = "{ rules { name recentEvents(limit: 3) { id deliveries { id } } } }"
    assert cost(nested) == 1 + DEFAULT_LIST_SIZE * (1 + 1 + 3 * (1 + 1 + DEFAULT_LIST_SIZE))


def test_max_points_bounds_the_points_under_each_series() -> None:
    query = """query($d: ID!, $s: DateTime!, $e: DateTime!, $m: Int!) {
        readings(deviceId: $d, start: $s, end: $e, maxPoints: $m) {
            probeId points { ts tempC } } }"""
    found = cost(query, d="pi", s="2026-01-01T00:00:00Z", e="2026-01-02T00:00:00Z", m=1000)
    assert found == 1 + DEFAULT_LIST_SIZE * (1 + 1 + 1000 * 2)


def test_fragments_and_introspection() -> None:
    with_fragment = """{ executions(limit: 4) { ...E } }
        fragment E on Execution { arn status history(limit: 10) { id } }"""
    assert cost(with_fragment) == 1 + 4 * (2 + 1 + 10)
    assert cost("{ __schema { types { name fields { name } } } }") == 0
    assert cost(get_introspection_query()) == 0
    cyclic = "{ executions { ...A } } fragment A on Execution { arn ...A }"
    assert cost(cyclic) == 1 + 50  # validation refuses the cycle; the estimate just stops


def test_a_huge_estimate_stops_early() -> None:
    query = "{ rules { recentEvents(limit: 500) { deliveries { attemptLog { error } } } } }"
    with pytest.raises(CostTooHigh, match="exceeds the limit"):
        query_cost(GRAPHQL, parse(query), {}, limit=MAX_COST)


@given(st.integers(min_value=1, max_value=5000), st.integers(min_value=1, max_value=5000))
def test_cost_grows_with_the_size_asked_for(small: int, extra: int) -> None:
    query = "query($n: Int!) { deadLetters(limit: $n) { id delivery { id } } }"
    assert cost(query, n=small) < cost(query, n=small + extra)
    assert cost(query, n=small) == 1 + small * 3


# --- through the API --------------------------------------------------------------------------


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(access_keys=KEYS)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post(client: TestClient, query: str, key: str = ADMIN_SECRET, **variables: Any) -> Any:
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=auth(key)
    )
    assert response.status_code == 200, response.text
    return response.json()


def error(body: Any) -> str:
    assert body.get("data") is None, body
    return " ".join(e["message"] for e in body["errors"])


def test_too_deep_too_many_aliases_and_too_costly_are_refused(client: TestClient) -> None:
    deep = "{ events { deliveries { event { deliveries { event { deliveries { event { "
    deep += "deliveries { event { deliveries { event { id } } } } } } } } } } } }"
    assert f"exceeds maximum operation depth of {MAX_DEPTH}" in error(post(client, deep))

    aliases = " ".join(f"a{i}: system {{ version }}" for i in range(MAX_ALIASES + 1))
    assert "aliases found" in error(post(client, f"{{ {aliases} }}"))

    costly = "{ rules { recentEvents(limit: 500) { deliveries { attemptLog { error } } } } }"
    body = post(client, costly)
    assert "exceeds the limit of 500,000" in error(body)
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"

    tokens = "{ system { " + "version " * 6000 + "} }"
    assert f"more than {MAX_TOKENS} tokens" in error(post(client, tokens))


def test_a_costly_mutation_changes_nothing(client: TestClient) -> None:
    """Refused in validation: the mutation never runs."""
    mutation = """mutation { startExecution(stateMachine: "hello-world") {
        history(limit: 1000) { id } a: history(limit: 1000) { id } b: history(limit: 1000) { id }
        c: history(limit: 1000) { id } d: history(limit: 1000) { id } e: history(limit: 1000) { id }
        } }""".replace("{ id }", "{ id type timestamp details previousEventId }" * 1)
    mutation = mutation.replace("history(limit: 1000)", "history(limit: 1000000)")
    assert "exceeds the limit" in error(post(client, mutation))
    found = post(client, '{ executions(stateMachine: "hello-world") { arn } }')
    assert found["data"]["executions"] == []


def test_what_the_dashboard_and_graphiql_ask_is_answered(client: TestClient) -> None:
    introspection = post(client, get_introspection_query())
    assert "errors" not in introspection
    assert introspection["data"]["__schema"]["queryType"]
    machine = """query($name: String!) { stateMachine(name: $name) { name definition
        graph { nodes { id type label end parent } edges { from to kind label } } }
        executions(stateMachine: $name, limit: 20) { arn history(limit: 1000) { id type } } }"""
    assert "errors" not in post(client, machine, name="hello-world")
    cook_csv = """query($id: Int!, $max: Int!) { cook(id: $id) { id readings(maxPoints: $max) {
        probeId points { ts tempC minC maxC } } } }"""
    answered = post(client, cook_csv, id=1, max=10000)
    assert "errors" not in answered
    assert answered["data"]["cook"] is None
    # the same document again hits the parser and validation caches and answers the same
    assert post(client, cook_csv, id=1, max=10000) == answered


# --- CORS and the dashboard's routes ------------------------------------------------------------


def preflight(client: TestClient, origin: str) -> httpx.Response:
    return client.options(
        "/graphql",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type",
        },
    )


def test_cors_is_off_unless_configured(client: TestClient) -> None:
    response = preflight(client, "https://grill.example")
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_the_configured_origins(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(access_keys=KEYS, cors_origins="https://grill.example/, http://pi")
    with TestClient(create_app(settings)) as client:
        allowed = preflight(client, "https://grill.example")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://grill.example"
        assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
        refused = preflight(client, "https://evil.example")
        assert "access-control-allow-origin" not in refused.headers
        answered = client.post(
            "/graphql",
            json={"query": "{ system { version } }"},
            headers={**auth(VIEWER_SECRET), "Origin": "http://pi"},
        )
        assert answered.headers["access-control-allow-origin"] == "http://pi"


def test_the_dashboard_is_served_beside_the_aws_api(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="/ui/js/main.js">' in page.text
    script = client.get("/ui/js/main.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert (
        client.get("/ui/js/main.js", headers={"If-None-Match": script.headers["etag"]}).status_code
        == 304
    )
    for asset in ("/ui/app.css", "/ui/vendor/uPlot.iife.min.js", "/ui/vendor/dagre.esm.js"):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/ui/../config.py").status_code == 404
    assert client.get("/ui/%2e%2e/routes.py").status_code == 404

    aws = client.post("/", content=b"{}", headers={"Content-Type": "application/x-amz-json-1.1"})
    assert aws.status_code == 400
    assert "__type" in aws.json()
    assert client.get("/healthz").status_code == 200
    assert client.post("/graphql", json={"query": "{ system { version } }"}).status_code == 401


def test_the_session_endpoint_names_the_role(client: TestClient) -> None:
    assert client.get("/ui/session").status_code == 401
    assert client.get("/ui/session", headers=auth("nope")).status_code == 401
    viewer = client.get("/ui/session", headers=auth(VIEWER_SECRET)).json()
    assert viewer == {"id": "AKVIEW", "role": "viewer", "canWrite": False}
    admin = client.get("/ui/session", headers=auth(ADMIN_SECRET)).json()
    assert admin["canWrite"] is True


# --- subscriptions after a killed client ---------------------------------------------------------

CLIENT = """
import json, sys, time
from websockets.sync.client import connect
url, key, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ws = connect(url, subprotocols=["graphql-transport-ws"])
ws.send(json.dumps({"type": "connection_init", "payload": {"x-api-key": key}}))
assert json.loads(ws.recv())["type"] == "connection_ack"
for i, query in enumerate(queries):
    ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": {"query": query}}))
print("subscribed", flush=True)
time.sleep(600)
"""


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), log_level="warning", lifespan="on", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="uvicorn to start")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def gauge(base: str) -> float:
    text = httpx.get(f"http://{base}/metrics", timeout=5).text
    lines = [line for line in text.splitlines() if line.startswith("smokehouse_graphql_active")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


@pytest.mark.integration
@pytest.mark.slow
def test_subscriptions_count_out_when_the_client_is_killed(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(access_keys=KEYS, redis_url=require_redis())
    queries = [
        "subscription { executionUpdates { execution { arn status } } }",
        "subscription { scalingDecisions { id } }",
        'subscription { readings(deviceId: "pit-1") { seq } }',
        "subscription { alarms { id } }",
    ]
    assert active_subscriptions() == 0
    with serve(settings) as base:
        for round_ in range(2):
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CLIENT,
                    f"ws://{base}/graphql",
                    token(VIEWER_SECRET),
                    json.dumps(queries),
                ],
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            try:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == b"subscribed", f"round {round_}"
                wait_for(lambda: active_subscriptions() == len(queries), 10, what="4 streaming")
                assert gauge(base) == len(queries)
            finally:
                os.kill(process.pid, signal.SIGKILL)  # no close frame, no complete
                process.wait(10)
            wait_for(lambda: active_subscriptions() == 0, 15, what="subscriptions to end")
            assert gauge(base) == 0


# --- no N+1 in the console's queries -----------------------------------------------------------

CONSOLE_QUERIES = {
    "rules": """{ rules { name targets { id arn }
        recentEvents(limit: 10) { id deliveries { id status attemptLog { outcome } } } } }""",
    "deadLetters": "{ deadLetters { id delivery { targetArn event { source envelope } } } }",
    "executions": "{ executions(limit: 50) { arn status history(limit: 1000) { id type } } }",
    "stateMachines": "{ stateMachines { name executionCount graph { nodes { id } } } }",
}


def _rules_and_events(settings: Settings, count: int, offset: int) -> None:
    from app.bus import service
    from app.bus.arns import Scope
    from app.bus.events import put_events
    from app.db import get_database, utcnow
    from app.workflows import service as workflows

    with get_database(settings.sqlalchemy_url).session() as session:
        for i in range(offset, offset + count):
            service.put_rule(session, name=f"r{i}", event_pattern={"source": [f"s{i}"]})
            service.put_targets(
                session, None, f"r{i}", [{"Id": "log", "Arn": "arn:smokehouse:handler:log"}]
            )
        session.flush()
        for i in range(offset, offset + count):
            entries = [{"Source": f"s{i}", "DetailType": "T", "Detail": "{}"}]
            put_events(session, entries, Scope(settings.region, settings.account_id))
        hello = workflows.scope(settings).state_machine("hello-world")
        machine = workflows.get_machine(session, hello)
        for _ in range(count):
            workflows.start_execution(
                session, settings, machine, name=None, input_text='{"name": "x"}', now=utcnow()
            )


def test_the_console_queries_cost_the_same_statements_for_more_rows(
    settings: Settings, client: TestClient
) -> None:
    """Dataloaders batch nested lists: 12 rules (with events and deliveries) or 12 executions
    (with their history) take as many SQL statements as 2."""
    from sqlalchemy import event

    from app.db import get_database

    engine = get_database(settings.sqlalchemy_url).engine
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    def measure() -> dict[str, int]:
        found = {}
        for name, query in CONSOLE_QUERIES.items():
            statements.clear()
            event.listen(engine, "before_cursor_execute", count)
            try:
                assert "errors" not in post(client, query)
            finally:
                event.remove(engine, "before_cursor_execute", count)
            found[name] = len(statements)
        return found

    _rules_and_events(settings, 2, 0)
    few = measure()
    assert all(few.values()), few
    _rules_and_events(settings, 10, 2)
    assert measure() == few, few
