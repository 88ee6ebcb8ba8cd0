"""API destinations against a real HTTP server on a free port that records every request."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from app.bus import service as bus
from app.bus.arns import Scope
from app.bus.delivery import deliver_batch
from app.bus.events import put_events
from app.bus.models import ApiDestination, Connection
from app.bus.targets import TargetFailure, adapter_for, validate_target
from app.bus.targets.http import ApiDestinationTarget
from app.config import Settings
from app.db import Database, get_database
from tests.integration.targets.conftest import EVENT, make_context

pytestmark = pytest.mark.integration

ARN_PREFIX = "arn:aws:events:us-east-1:000000000000:api-destination"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class Httpd(ThreadingHTTPServer):
    request_queue_size = 64  # listen()'s backlog: a delivery batch opens up to 16 connections
    daemon_threads = True


class Server:
    """``/status/<code>[/retry/<value>]`` answers that status (with Retry-After), ``/slow`` takes
    6 s, anything else answers 200; every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append(
                    Recorded(
                        self.command,
                        parts.path,
                        dict(parse_qsl(parts.query)),
                        {k.lower(): v for k, v in self.headers.items()},
                        self.rfile.read(length),
                    )
                )
                status, headers = 200, {}
                segments = parts.path.strip("/").split("/")
                if segments[0] == "slow":
                    time.sleep(6)
                elif segments[0] == "status":
                    status = int(segments[1])
                    if len(segments) >= 4 and segments[2] == "retry":
                        headers["Retry-After"] = segments[3].replace("_", " ")
                body = b'{"ok":true}'
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any  # noqa: N815

        self.httpd = Httpd(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


Destination = Callable[..., str]


@pytest.fixture
def destination(database: Database) -> Destination:
    """Create a connection + API destination; return the target ARN."""

    def create(
        endpoint: str,
        *,
        method: str = "POST",
        auth_type: str = "API_KEY",
        auth: dict[str, Any] | None = None,
        rate: int = 300,
    ) -> str:
        name = f"dest-{uuid.uuid4().hex[:8]}"
        dest_uuid = str(uuid.uuid4())
        auth = auth or {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k3y"}}
        with database.session() as session:
            session.add(
                Connection(
                    name=f"{name}-conn",
                    uuid=str(uuid.uuid4()),
                    authorization_type=auth_type,
                    auth_parameters=auth,
                    state="AUTHORIZED",
                )
            )
            session.flush()  # the destination's foreign key needs the connection first
            session.add(
                ApiDestination(
                    name=name,
                    uuid=dest_uuid,
                    connection_name=f"{name}-conn",
                    endpoint=endpoint,
                    http_method=method,
                    invocation_rate_limit_per_second=rate,
                    state="ACTIVE",
                )
            )
        return f"{ARN_PREFIX}/{name}/{dest_uuid}"

    return create


def deliver(settings: Settings, spec: dict[str, Any]) -> int | None:
    context, payload = make_context(settings, spec)
    adapter = adapter_for(spec["Arn"])
    assert isinstance(adapter, ApiDestinationTarget)
    return adapter.deliver(context, payload)


def failure_of(settings: Settings, spec: dict[str, Any]) -> TargetFailure:
    with pytest.raises(TargetFailure) as caught:
        deliver(settings, spec)
    return caught.value


def test_request_carries_everything_eventbridge_sends(
    settings: Settings, server: Server, destination: Destination
) -> None:
    arn = destination(
        f"{server.url}/orders/*/items",
        auth={
            "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k3y"},
            "InvocationHttpParameters": {
                "HeaderParameters": [{"Key": "X-Conn", "Value": "from-connection"}],
                "QueryStringParameters": [{"Key": "conn", "Value": "1", "IsValueSecret": True}],
                "BodyParameters": [{"Key": "tenant", "Value": "acme"}],
            },
        },
    )
    spec = {
        "Id": "api",
        "Arn": arn,
        "HttpParameters": {
            "PathParameterValues": ["$.detail.order"],
            "HeaderParameters": {"X-Target": "t", "X-State": "$.detail.state", "X-Conn": "lost"},
            "QueryStringParameters": {"q": "v w", "total": "$.detail.total"},
        },
        "InputTransformer": {
            "InputPathsMap": {"order": "$.detail.order"},
            "InputTemplate": '{"order": <order>, "rule": <aws.events.rule-name>}',
        },
    }
    assert deliver(settings, spec) == 200
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/orders/o-1/items"
    assert request.query == {"q": "v w", "total": "12.5", "conn": "1"}
    assert request.headers["user-agent"] == "Amazon/EventBridge/ApiDestinations"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.headers["range"] == "bytes=0-1048575"
    assert request.headers["x-api-key"] == "k3y"
    assert request.headers["x-target"] == "t"
    assert request.headers["x-state"] == "RUNNING"
    assert request.headers["x-conn"] == "from-connection"  # the connection's value wins
    assert json.loads(request.body) == {"order": "o-1", "rule": "source-rule", "tenant": "acme"}


def test_without_input_the_body_is_the_event(
    settings: Settings, server: Server, destination: Destination
) -> None:
    arn = destination(f"{server.url}/hook", method="PUT")
    assert deliver(settings, {"Id": "api", "Arn": arn}) == 200
    [request] = server.requests
    assert request.method == "PUT"
    assert json.loads(request.body) == EVENT


@pytest.mark.parametrize(
    ("auth_type", "auth", "header"),
    [
        (
            "API_KEY",
            {"ApiKeyAuthParameters": {"ApiKeyName": "Authorization", "ApiKeyValue": "Bearer t0k"}},
            "Bearer t0k",
        ),
        (
            "BASIC",
            {"BasicAuthParameters": {"Username": "smoker", "Password": "p@ss"}},
            "Basic " + base64.b64encode(b"smoker:p@ss").decode(),
        ),
    ],
)
def test_authorization(
    settings: Settings,
    server: Server,
    destination: Destination,
    auth_type: str,
    auth: dict[str, Any],
    header: str,
) -> None:
    arn = destination(f"{server.url}/auth", auth_type=auth_type, auth=auth)
    assert deliver(settings, {"Id": "api", "Arn": arn}) == 200
    assert server.requests[0].headers["authorization"] == header


def test_a_slow_endpoint_times_out_after_5_s_and_is_retried(
    settings: Settings, server: Server, destination: Destination
) -> None:
    arn = destination(f"{server.url}/slow")
    started = time.monotonic()
    failure = failure_of(settings, {"Id": "api", "Arn": arn})
    elapsed = time.monotonic() - started
    assert failure.retryable
    assert failure.code == "Timeout"
    assert 4.5 < elapsed < 5.9


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("7", 7.0), ("0", 0.0), (None, None)],
)
def test_429_is_retried_honouring_retry_after_seconds(
    settings: Settings,
    server: Server,
    destination: Destination,
    retry_after: str | None,
    expected: float | None,
) -> None:
    path = "/status/429" + (f"/retry/{retry_after}" if retry_after is not None else "")
    failure = failure_of(settings, {"Id": "api", "Arn": destination(server.url + path)})
    assert failure.retryable
    assert failure.status_code == 429
    assert failure.retry_after == expected


def test_retry_after_as_an_http_date(
    settings: Settings, server: Server, destination: Destination
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    arn = destination(f"{server.url}/status/503/retry/{when.replace(' ', '_')}")
    failure = failure_of(settings, {"Id": "api", "Arn": arn})
    assert failure.retryable
    assert failure.status_code == 503
    assert failure.retry_after is not None
    assert 25 < failure.retry_after <= 30


def test_a_negative_retry_after_stops_the_retries(
    settings: Settings, server: Server, destination: Destination
) -> None:
    arn = destination(f"{server.url}/status/429/retry/-1")
    failure = failure_of(settings, {"Id": "api", "Arn": arn})
    assert not failure.retryable
    assert failure.status_code == 429


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried(
    settings: Settings, server: Server, destination: Destination, status: int
) -> None:
    failure = failure_of(
        settings, {"Id": "api", "Arn": destination(f"{server.url}/status/{status}")}
    )
    assert failure.retryable
    assert failure.status_code == status


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409])
def test_other_statuses_are_not_retried(
    settings: Settings, server: Server, destination: Destination, status: int
) -> None:
    failure = failure_of(
        settings, {"Id": "api", "Arn": destination(f"{server.url}/status/{status}")}
    )
    assert not failure.retryable
    assert failure.status_code == status


def test_an_unreachable_endpoint_is_retried(settings: Settings, destination: Destination) -> None:
    from tests.services import free_port

    failure = failure_of(
        settings, {"Id": "api", "Arn": destination(f"http://127.0.0.1:{free_port()}/x")}
    )
    assert failure.retryable
    assert failure.code == "ConnectionError"


def test_invocation_rate_limit(
    settings: Settings, server: Server, destination: Destination
) -> None:
    arn = destination(f"{server.url}/limited", rate=2)
    spec = {"Id": "api", "Arn": arn}
    assert deliver(settings, spec) == 200
    assert deliver(settings, spec) == 200
    failure = failure_of(settings, spec)
    assert failure.retryable
    assert failure.code == "ThrottledByRateLimit"
    assert failure.retry_after is not None
    assert 0 < failure.retry_after <= 0.5
    assert len(server.requests) == 2
    time.sleep(failure.retry_after)
    assert deliver(settings, spec) == 200


def test_validation(settings: Settings, database: Database, destination: Destination) -> None:
    arn = destination("https://example.invalid/hook")
    name, dest_uuid = arn.rsplit("/", 2)[1:]
    with database.session() as session:
        assert validate_target(session, {"Id": "a", "Arn": arn}) is None
        assert validate_target(session, {"Id": "a", "Arn": f"{ARN_PREFIX}/nope/{dest_uuid}"}) == (
            "API destination nope does not exist."
        )
        assert validate_target(session, {"Id": "a", "Arn": f"{ARN_PREFIX}/{name}/{uuid.uuid4()}"})
        bad_header = {"Id": "a", "Arn": arn, "HttpParameters": {"HeaderParameters": {"a b": "x"}}}
        assert "not a valid header name" in str(validate_target(session, bad_header))
        bad_path = {"Id": "a", "Arn": arn, "HttpParameters": {"PathParameterValues": ["$..x"]}}
        assert "not a valid JSON path" in str(validate_target(session, bad_path))


def test_end_to_end_through_put_events_and_the_delivery_module(
    settings: Settings, database: Database, server: Server, destination: Destination
) -> None:
    from app.bus.arns import Scope
    from app.bus.delivery import deliver as run_delivery
    from app.bus.events import put_events
    from app.bus.models import Delivery
    from app.bus.service import put_rule, put_targets

    ok, failing = destination(f"{server.url}/e2e"), destination(f"{server.url}/status/500")
    with database.session() as session:
        put_rule(session, name="to-api", event_pattern={"source": ["shop.orders"]})
        targets = [
            {"Id": "ok", "Arn": ok, "InputPath": "$.detail"},
            {"Id": "failing", "Arn": failing},
        ]
        assert put_targets(session, None, "to-api", targets) == []
    entry = {"Source": "shop.orders", "DetailType": "Order Placed", "Detail": '{"order": "o-9"}'}
    with database.session() as session:
        ids = put_events(session, [entry], Scope(settings.region, settings.account_id)).delivery_ids
    outcomes = {run_delivery(settings, delivery_id) for delivery_id in ids}
    assert outcomes == {"succeeded", "retry"}
    [received] = [r for r in server.requests if r.path == "/e2e"]
    assert json.loads(received.body) == {"order": "o-9"}
    with database.session() as session:
        deliveries = [session.get(Delivery, i) for i in ids]
        failed = [d for d in deliveries if d is not None and d.target_id == "failing"]
        assert failed[0].last_error is not None
        assert "HTTP 500" in failed[0].last_error


def test_a_delivery_batch_calls_its_destination_concurrently_with_its_connection(
    settings: Settings, server: Server, destination: Destination
) -> None:
    """A batch's deliveries to one API destination are called concurrently from one lookup of
    the destination and its connection (the batch memo); each call still carries the
    connection's key and its own event."""
    arn = destination(f"{server.url}/hook")
    with get_database(settings.sqlalchemy_url).session() as session:
        bus.put_rule(session, name="to-sink", event_pattern={"source": ["test.sink"]})
        assert bus.put_targets(session, None, "to-sink", [{"Id": "s", "Arn": arn}]) == []
        put = put_events(
            session,
            [
                {"Source": "test.sink", "DetailType": "Item", "Detail": json.dumps({"n": n})}
                for n in range(10)
            ],
            Scope(settings.region, settings.account_id),
        )
    assert deliver_batch(settings, put.delivery_ids) == dict.fromkeys(put.delivery_ids, "succeeded")
    assert len(server.requests) == 10
    assert {r.headers["x-api-key"] for r in server.requests} == {"k3y"}
    assert sorted(json.loads(r.body)["detail"]["n"] for r in server.requests) == list(range(10))
