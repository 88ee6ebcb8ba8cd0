"""Who may do what, generated from the registries: every AWS operation (``app.aws.registry``),
every GraphQL mutation and subscription (the strawberry schema) and every REST route (the
FastAPI app's routes), each for anonymous / viewer / admin.

* anonymous: refused (401, or the AWS authentication error on ``POST /``) **without the body
  being read** (the app pulled no chunk of it);
* viewer: refused on every write (``AccessDeniedException``, GraphQL "read-only", HTTP 403),
  allowed to read;
* admin: allowed (not refused; a business error such as a validation error is fine, a 5xx is
  not).

A route, operation or field added later lands in this matrix by itself; a REST route that is not
in :data:`REST` fails :func:`test_every_route_is_classified` until someone decides its class.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fastapi.testclient import TestClient
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLType,
    get_named_type,
    is_leaf_type,
)
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

import app.wiring  # noqa: F401  (fills the registries)
from app.auth import AccessKey
from app.aws import registry
from app.aws.operations import MODELS, Operation
from app.aws.rest import rest_registry
from app.aws.validate import service_model
from app.graphql.schema import schema
from tests.keys import ADMIN, ADMIN_SECRET, VIEWER, token
from tests.security.frontdoor import AUTH_CODES, HOST, Body, build_client, call, sigv4_headers

pytestmark = pytest.mark.integration

ROLES = ("anonymous", "viewer", "admin")
GRAPHQL = schema._schema
#: Every REST route: (method, path) -> (credential, access). ``session`` routes need a session
#: token, ``webhook`` the GitLab token, ``public`` nothing; ``write`` needs an admin.
REST: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/healthz"): ("public", "read"),
    ("GET", "/readyz"): ("public", "read"),
    ("GET", "/metrics"): ("public", "read"),
    ("GET", "/"): ("public", "read"),
    ("GET", "/ui"): ("public", "read"),  # the dashboard's static files (a Mount)
    ("GET", "/favicon.ico"): ("public", "read"),
    ("GET", "/sw.js"): ("public", "read"),  # the dashboard's service worker (caches no data)
    ("POST", "/auth/session"): ("public", "write"),  # the login: it checks the key itself
    ("GET", "/ui/session"): ("session", "read"),
    ("GET", "/graphql"): ("session", "read"),  # GraphiQL's page and GET queries
    ("POST", "/graphql"): ("session", "read"),  # mutations are checked per field below
    ("WS", "/graphql"): ("session", "read"),  # connection_init; subscriptions below
    ("POST", "/queues/{queue}/messages"): ("session", "write"),
    ("GET", "/queues/{queue}/messages/{message_id}"): ("session", "read"),
    ("POST", "/webhooks/gitlab"): ("webhook", "write"),
    ("POST", "/"): ("sigv4", "write"),  # per operation below
    # EventBridge Scheduler (REST-JSON): per operation below (test_aws_rest_operation)
    ("POST", "/schedules/{Name}"): ("sigv4", "write"),
    ("PUT", "/schedules/{Name}"): ("sigv4", "write"),
    ("GET", "/schedules/{Name}"): ("sigv4", "read"),
    ("DELETE", "/schedules/{Name}"): ("sigv4", "write"),
    ("GET", "/schedules"): ("sigv4", "read"),
    ("POST", "/schedule-groups/{Name}"): ("sigv4", "write"),
    ("GET", "/schedule-groups/{Name}"): ("sigv4", "read"),
    ("DELETE", "/schedule-groups/{Name}"): ("sigv4", "write"),
    ("GET", "/schedule-groups"): ("sigv4", "read"),
    ("POST", "/tags/{ResourceArn:path}"): ("sigv4", "write"),
    ("DELETE", "/tags/{ResourceArn:path}"): ("sigv4", "write"),
    ("GET", "/tags/{ResourceArn:path}"): ("sigv4", "read"),
    ("GET", "/openapi.json"): ("public", "read"),
    ("GET", "/docs"): ("public", "read"),
    ("GET", "/docs/oauth2-redirect"): ("public", "read"),
    ("GET", "/redoc"): ("public", "read"),
}
#: A body for a route that takes one (what a caller would send; the matrix checks who gets in).
REST_BODIES = {
    "/queues/{queue}/messages": {"handler": "no-such-handler", "payload": {}},
    "/auth/session": {"key": "not-a-key"},
    "/graphql": {"query": "{ system { version } }"},
    "/webhooks/gitlab": {"object_kind": "build"},
}
CASES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with build_client(tmp_path_factory.mktemp("matrix")) as test_client:
        yield test_client
    print("\nauthorization matrix cases per class:", dict(sorted(CASES.items())))


def key_for(role: str) -> AccessKey | None:
    return {"anonymous": None, "viewer": VIEWER, "admin": ADMIN}[role]


def bearer(role: str) -> list[tuple[str, str]]:
    key = key_for(role)
    return [] if key is None else [("authorization", f"Bearer {token(key)}")]


def untouched_body(payload: bytes) -> Body:
    """A body the front door must not read for an anonymous caller: a few chunks."""
    return Body(chunk=payload, count=4)


# --- AWS operations ------------------------------------------------------------------------------

AWS_OPERATIONS = sorted(registry, key=lambda op: op.target)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", AWS_OPERATIONS, ids=lambda op: op.target)
def test_aws_operation(client: TestClient, operation: Operation, role: str) -> None:
    CASES["aws"] += 1
    body = b"{}"
    key = key_for(role)
    if key is None:
        headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", operation.target),
        ]
        answer = call(client, "POST", "/", headers, untouched_body(body))
        assert answer.aws_code == "MissingAuthenticationTokenException", answer.body
        assert answer.status in (400, 403)
        assert answer.pulled == 0, "the body was read before the caller was known"
        return
    headers = sigv4_headers(key, operation.target, body, operation.service)
    answer = call(client, "POST", "/", headers, body)
    assert answer.status < 500, answer.body
    assert answer.aws_code not in AUTH_CODES, answer.body
    if role == "viewer" and operation.write:
        assert answer.aws_code == "AccessDeniedException", answer.body
    else:
        assert answer.aws_code != "AccessDeniedException", answer.body


REST_OPERATIONS = sorted(rest_registry, key=lambda op: op.target)


def rest_request(operation: Operation) -> tuple[str, str, bytes]:
    """(method, path, body) of a REST-JSON operation, its URI members filled in."""
    http = service_model(MODELS[operation.prefix]).operation_model(operation.name).http
    arn = "arn:aws:scheduler:us-east-1:000000000000:schedule-group/no-such-group"
    path = http["requestUri"].replace("{Name}", "no-such-name").replace("{ResourceArn}", arn)
    return http["method"], path, b"{}" if http["method"] in ("POST", "PUT") else b""


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", REST_OPERATIONS, ids=lambda op: op.target)
def test_aws_rest_operation(client: TestClient, operation: Operation, role: str) -> None:
    CASES["aws-rest"] += 1
    method, path, body = rest_request(operation)
    key = key_for(role)
    if key is None:
        headers = [("content-type", "application/json")]
        answer = call(client, method, path, headers, untouched_body(body) if body else body)
        assert answer.aws_code == "MissingAuthenticationTokenException", answer.body
        assert answer.pulled == 0, "the body was read before the caller was known"
        return
    request = AWSRequest(
        method=method,
        url=f"http://{HOST}{quote(path)}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(key.id, key.secret), operation.service, "us-east-1").add_auth(request)
    answer = call(client, method, quote(path), list(request.headers.items()), body)
    assert answer.status < 500, answer.body
    assert answer.aws_code not in AUTH_CODES, answer.body
    if role == "viewer" and operation.write:
        assert answer.aws_code == "AccessDeniedException", answer.body
    else:
        assert answer.aws_code != "AccessDeniedException", answer.body


# --- GraphQL mutations and subscriptions --------------------------------------------------------


def sample(kind: GraphQLType) -> Any:
    """A value of ``kind`` that passes validation (required input fields filled)."""
    if isinstance(kind, GraphQLNonNull):
        return sample(kind.of_type)
    if isinstance(kind, GraphQLList):
        return []
    if isinstance(kind, GraphQLEnumType):
        return next(iter(kind.values))
    if isinstance(kind, GraphQLInputObjectType):
        return {
            name: sample(field.type)
            for name, field in kind.fields.items()
            if isinstance(field.type, GraphQLNonNull)
        }
    assert isinstance(kind, GraphQLScalarType)
    return {"Int": 1, "Float": 1.0, "Boolean": False}.get(kind.name, "x")


def operation_document(kind: str, name: str, field: GraphQLField) -> tuple[str, dict[str, Any]]:
    """``mutation($a: T!) { name(a: $a) { __typename } }`` with sample variables."""
    required = {a: arg for a, arg in field.args.items() if isinstance(arg.type, GraphQLNonNull)}
    params = ", ".join(f"${a}: {arg.type}" for a, arg in required.items())
    args = ", ".join(f"{a}: ${a}" for a in required)
    selection = "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"
    head = f"{kind}({params})" if params else kind
    call_ = f"{name}({args})" if args else name
    return f"{head} {{ {call_}{selection} }}", {a: sample(arg.type) for a, arg in required.items()}


MUTATIONS = sorted(GRAPHQL.mutation_type.fields.items()) if GRAPHQL.mutation_type else []
SUBSCRIPTIONS = (
    sorted(GRAPHQL.subscription_type.fields.items()) if GRAPHQL.subscription_type else []
)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "field"), MUTATIONS, ids=[n for n, _ in MUTATIONS])
def test_graphql_mutation(client: TestClient, name: str, field: GraphQLField, role: str) -> None:
    CASES["graphql-mutation"] += 1
    query, variables = operation_document("mutation", name, field)
    payload = json.dumps({"query": query, "variables": variables}).encode()
    headers = [("content-type", "application/json"), *bearer(role)]
    if role == "anonymous":
        answer = call(client, "POST", "/graphql", headers, untouched_body(payload))
        assert answer.status == 401, answer.body
        assert answer.pulled == 0, "the body was read before the caller was known"
        return
    answer = call(client, "POST", "/graphql", headers, payload)
    assert answer.status == 200, answer.body
    messages = " ".join(e["message"] for e in answer.json().get("errors") or [])
    assert "Not authenticated" not in messages
    if role == "viewer":
        assert "read-only" in messages, answer.body
    else:
        assert "read-only" not in messages, answer.body


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "field"), SUBSCRIPTIONS, ids=[n for n, _ in SUBSCRIPTIONS])
def test_graphql_subscription(
    client: TestClient, name: str, field: GraphQLField, role: str
) -> None:
    CASES["graphql-subscription"] += 1
    query, variables = operation_document("subscription", name, field)
    key = key_for(role)
    init = {} if key is None else {"Authorization": f"Bearer {token(key)}"}
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": init})
        if key is None:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4403
            return
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
        )
        ws.send_json({"type": "ping"})
        seen = []
        while (message := ws.receive_json())["type"] != "pong":
            seen.append(message)
        assert not [m for m in seen if m["type"] == "error"], seen
        ws.send_json({"id": "1", "type": "complete"})


def test_a_raw_secret_opens_no_subscription(client: TestClient) -> None:
    """connection_init with the access key's own secret (what the dashboard used to send)."""
    CASES["graphql-subscription"] += 1
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"x-api-key": ADMIN_SECRET}})
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


# --- REST routes ---------------------------------------------------------------------------------


def app_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, included routers and mounts followed."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # FastAPI's lazily included router
            yield from app_routes(inner.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Mount):
            yield "GET", prefix + route.path
        elif isinstance(route, WebSocketRoute):
            yield "WS", prefix + route.path
        else:
            for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"}):
                yield method, prefix + route.path


def test_every_route_is_classified(client: TestClient) -> None:
    found = set(app_routes(client.app.routes))  # type: ignore[attr-defined]
    assert found - set(REST) == set(), "classify the new routes in REST"
    assert set(REST) - found == set(), "REST names a route the app does not have"


REST_CASES = [
    (method, path, role)
    for (method, path), (credential, _) in sorted(REST.items())
    if method != "WS" and credential != "sigv4"  # the socket and the AWS APIs: own tests
    for role in ROLES
]


def concrete(path: str) -> str:
    return path.replace("{queue}", "default").replace("{message_id}", "no-such-message")


@pytest.mark.parametrize(("method", "path", "role"), REST_CASES)
def test_rest_route(client: TestClient, method: str, path: str, role: str) -> None:
    CASES["rest"] += 1
    credential, access = REST[(method, path)]
    target = concrete(path) + ("/index.html" if path == "/ui" else "")
    payload = json.dumps(REST_BODIES.get(path, {})).encode() if method == "POST" else b""
    headers = [("content-type", "application/json"), *bearer(role)]
    if (method, path) == ("GET", "/graphql"):
        headers.append(("accept", "text/html"))  # the GraphiQL page
    body = untouched_body(payload) if payload and role == "anonymous" else Body(payload=payload)
    answer = call(client, method, target, headers, body)
    assert answer.status < 500 or path == "/readyz", answer.body  # 503: no MQTT broker here
    if credential == "webhook":  # its own credential: a session token is no webhook token
        assert answer.status == 401, answer.body
        assert answer.pulled == 0
        return
    if credential == "public":
        assert answer.status not in (401, 403) or path == "/auth/session", answer.body
        return
    if role == "anonymous":
        assert answer.status == 401, answer.body
        assert answer.pulled == 0, "the body was read before the caller was known"
    elif role == "viewer" and access == "write":
        assert answer.status == 403, answer.body
    else:
        assert answer.status not in (401, 403), answer.body


def test_case_counts(client: TestClient) -> None:
    """Printed with ``-s`` (and by the module fixture at teardown)."""
    counts = {
        "aws": len(AWS_OPERATIONS) * len(ROLES),
        "aws-rest": len(REST_OPERATIONS) * len(ROLES),
        "graphql-mutation": len(MUTATIONS) * len(ROLES),
        "graphql-subscription": len(SUBSCRIPTIONS) * len(ROLES) + 1,
        "rest": len(REST_CASES),
    }
    print("\nauthorization matrix:", counts, "total", sum(counts.values()))
    assert all(counts.values())
    assert {op.prefix for op in AWS_OPERATIONS} == {"AWSEvents", "AWSStepFunctions", "AmazonSQS"}
    assert {op.prefix for op in REST_OPERATIONS} == {"Scheduler"}
