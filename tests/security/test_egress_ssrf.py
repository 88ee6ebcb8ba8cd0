"""SSRF attempts through every outbound path a user controls: ``http:invoke``, API destinations
(bus HTTP targets, through the delivery module too) and alarm notifications (Apprise).

Real local HTTP servers: ``allowed`` on 127.0.0.1 (allow-listed where a test needs an allowed
hop) and ``victim`` on 127.0.0.2, which must never see a request. Unroutable ranges
(169.254.169.254, 10/8, fd00::/8) are refused before any connection: the tests assert the
refusal's reason, which a connection attempt would not give. Settings are built without the
allow-list unless a test says otherwise.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from app.bus.models import ApiDestination, Connection
from app.bus.targets import TargetFailure
from app.bus.targets.http import ApiDestinationTarget
from app.config import Settings
from app.db import get_database
from app.workflows.asl import TaskError
from app.workflows.resources.base import TaskCall
from app.workflows.resources.http import HttpResource
from tests.integration.targets.conftest import make_context
from tests.services import migrate

pytestmark = pytest.mark.integration

BIG = 32 * 1024 * 1024


class Server:
    """Records requests; ``/redirect?to=URL`` redirects, ``/drip`` drips its body, ``/big``
    sends 32 MiB and counts what it managed to send."""

    def __init__(self, host: str) -> None:
        self.hits: list[str] = []
        self.sent = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                outer.hits.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = urlsplit(self.path)
                if path.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(path.query)["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path.path == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.1)
                    return
                if path.path == "/big":
                    self.send_response(200)
                    self.send_header("Content-Length", str(BIG))
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        for _ in range(BIG // len(chunk)):
                            self.wfile.write(chunk)
                            outer.sent += len(chunk)
                    except OSError:
                        pass
                    return
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = handle_any  # noqa: N815

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def allowed() -> Iterator[Server]:
    server = Server("127.0.0.1")
    yield server
    server.close()


@pytest.fixture
def victim() -> Iterator[Server]:
    server = Server("127.0.0.2")
    yield server
    server.close()


Make = Callable[..., Settings]


@pytest.fixture
def make(settings_factory: Make) -> Make:
    """Settings on a migrated SQLite database; ``egress`` as given (default: nothing allowed)."""

    def build(**overrides: Any) -> Settings:
        settings = settings_factory(**overrides)
        migrate(settings.sqlalchemy_url)
        return settings

    return build


def refused_targets(victim: Server, own_port: int) -> list[tuple[str, str]]:
    """(URL, the reason the policy must give) for every refused range."""
    return [
        (f"{victim.url}/loopback", "loopback"),
        (f"http://localhost:{victim.port}/by-name", "loopback"),
        (f"http://[::ffff:127.0.0.2]:{victim.port}/mapped", "loopback"),
        (f"http://[::1]:{victim.port}/v6", "loopback"),
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/api/token", "cloud metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://10.255.255.1:2375/containers/json", "private"),
        ("http://192.168.77.1/", "private"),
        ("http://100.64.0.1/", "shared address space (CGNAT)"),
        ("http://[fd12:3456::1]/", "unique-local"),
        ("http://0.0.0.0:" + str(own_port) + "/", "own ports"),
    ]


# --- http:invoke ---------------------------------------------------------------------------


def invoke(settings: Settings, url: str, method: str = "GET", **more: Any) -> Any:
    call = TaskCall(
        resource="arn:aws:states:::http:invoke",
        parameters={"ApiEndpoint": url, "Method": method, **more},
        settings=settings,
        execution_arn="arn:aws:states:us-east-1:000000000000:execution:m:e",
        state_machine_arn="arn:aws:states:us-east-1:000000000000:stateMachine:m",
        state_name="Call",
        ref=uuid.uuid4().hex,
        timeout_seconds=60,
    )
    return HttpResource().run(call)


def invoke_error(settings: Settings, url: str, **more: Any) -> TaskError:
    with pytest.raises(TaskError) as caught:
        invoke(settings, url, **more)
    return caught.value


def test_http_invoke_refuses_every_range(make: Make, victim: Server) -> None:
    settings = make()
    for url, reason in refused_targets(victim, settings.http_port):
        error = invoke_error(settings, url)
        assert error.error == "States.Http.Socket", url
        assert error.cause.startswith("egress refused:"), (url, error.cause)
        assert reason.split()[-1] in error.cause, (url, error.cause)
    assert victim.hits == []


def test_http_invoke_refuses_the_services_own_port_even_when_allow_listed(
    make: Make, victim: Server
) -> None:
    settings = make(http_port=victim.port, egress={"allow": "127.0.0.0/8"})
    error = invoke_error(settings, f"{victim.url}/healthz")
    assert "own ports" in error.cause
    assert victim.hits == []


def test_http_invoke_reaches_an_allow_listed_server(make: Make, allowed: Server) -> None:
    settings = make(egress={"allow": "127.0.0.1"})
    result = invoke(settings, f"{allowed.url}/fine", "POST", RequestBody={"a": 1})
    assert result["StatusCode"] == 200
    assert result["ResponseBody"] == {"ok": True}
    assert allowed.hits == ["/fine"]


def test_http_invoke_checks_every_redirect(make: Make, allowed: Server, victim: Server) -> None:
    for to in (f"{victim.url}/after-redirect", "http://169.254.169.254/latest/meta-data/"):
        # followed (MAX_REDIRECTS): the refused hop fails the task before it is connected to
        settings = make(egress={"allow": "127.0.0.1", "max_redirects": 3})
        error = invoke_error(settings, f"{allowed.url}/redirect?to={to}")
        assert error.error == "States.Http.Socket"
        assert error.cause.startswith("egress refused:"), error.cause
        # not followed (the default): the 3xx is the answer
        settings = make(egress={"allow": "127.0.0.1"})
        assert invoke_error(settings, f"{allowed.url}/redirect?to={to}").error == (
            "States.Http.StatusCode.302"
        )
    assert victim.hits == []


def test_http_invoke_slow_drip_is_cut_at_the_total_deadline(make: Make, allowed: Server) -> None:
    settings = make(egress={"allow": "127.0.0.1", "timeout_seconds": 1.5})
    started = time.monotonic()
    error = invoke_error(settings, f"{allowed.url}/drip")
    elapsed = time.monotonic() - started
    assert error.error == "States.Http.Socket"
    assert "within 1.5 s" in error.cause
    assert elapsed < 2.5  # the drip takes 10 s; no read ever waits long enough to time out


def test_http_invoke_stops_reading_at_the_cap(make: Make, allowed: Server) -> None:
    settings = make(egress={"allow": "127.0.0.1"})
    error = invoke_error(settings, f"{allowed.url}/big")
    assert error.error == "States.DataLimitExceeded"
    time.sleep(0.3)
    assert allowed.sent < BIG // 4  # streamed and cut, not read whole then judged


# --- API destinations (bus HTTP targets) ---------------------------------------------------

ARN_PREFIX = "arn:aws:events:us-east-1:000000000000:api-destination"


def destination(settings: Settings, endpoint: str) -> str:
    name = f"dest-{uuid.uuid4().hex[:8]}"
    dest_uuid = str(uuid.uuid4())
    with get_database(settings.sqlalchemy_url).session() as session:
        session.add(
            Connection(
                name=f"{name}-conn",
                uuid=str(uuid.uuid4()),
                authorization_type="API_KEY",
                auth_parameters={"ApiKeyAuthParameters": {"ApiKeyName": "k", "ApiKeyValue": "v"}},
                state="AUTHORIZED",
            )
        )
        session.flush()
        session.add(
            ApiDestination(
                name=name,
                uuid=dest_uuid,
                connection_name=f"{name}-conn",
                endpoint=endpoint,
                http_method="POST",
                invocation_rate_limit_per_second=300,
                state="ACTIVE",
            )
        )
    return f"{ARN_PREFIX}/{name}/{dest_uuid}"


def deliver_failure(settings: Settings, endpoint: str) -> TargetFailure:
    spec = {"Id": "api", "Arn": destination(settings, endpoint)}
    context, payload = make_context(settings, spec)
    with pytest.raises(TargetFailure) as caught:
        ApiDestinationTarget().deliver(context, payload)
    return caught.value


def test_api_destinations_refuse_every_range(make: Make, victim: Server) -> None:
    settings = make()
    for url, reason in refused_targets(victim, settings.http_port):
        failure = deliver_failure(settings, url)
        assert failure.code == "EgressRefused", (url, failure.message)
        assert failure.retryable is False
        assert reason.split()[-1] in failure.message, (url, failure.message)
    assert victim.hits == []


def test_api_destination_redirects_are_not_followed(
    make: Make, allowed: Server, victim: Server
) -> None:
    settings = make(egress={"allow": "127.0.0.1", "max_redirects": 5})
    failure = deliver_failure(settings, f"{allowed.url}/redirect?to={victim.url}/x")
    assert failure.status_code == 302
    assert victim.hits == []


def test_api_destination_slow_drip_and_oversized_answers(make: Make, allowed: Server) -> None:
    settings = make(egress={"allow": "127.0.0.1", "timeout_seconds": 1.5})
    started = time.monotonic()
    failure = deliver_failure(settings, f"{allowed.url}/drip")
    assert failure.code == "Timeout"
    assert time.monotonic() - started < 2.5
    settings = make(egress={"allow": "127.0.0.1", "max_response_bytes": 65536})
    failure = deliver_failure(settings, f"{allowed.url}/big")
    assert failure.code == "ResponseTooLarge"
    time.sleep(0.3)
    assert allowed.sent < BIG // 4


def test_a_refused_delivery_goes_to_the_dead_letter_path_with_its_reason(
    make: Make, victim: Server
) -> None:
    from app.bus.arns import Scope
    from app.bus.delivery import deliver as run_delivery
    from app.bus.events import put_events
    from app.bus.models import Delivery
    from app.bus.service import put_rule, put_targets

    settings = make()
    database = get_database(settings.sqlalchemy_url)
    arn = destination(settings, "http://169.254.169.254/latest/meta-data/")
    with database.session() as session:
        put_rule(session, name="to-imds", event_pattern={"source": ["shop.orders"]})
        assert put_targets(session, None, "to-imds", [{"Id": "imds", "Arn": arn}]) == []
    entry = {"Source": "shop.orders", "DetailType": "Order", "Detail": "{}"}
    with database.session() as session:
        [delivery_id] = put_events(
            session, [entry], Scope(settings.region, settings.account_id)
        ).delivery_ids
    assert run_delivery(settings, delivery_id) not in {"succeeded", "retry"}
    with database.session() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        assert row.status != "succeeded"
        assert row.last_error is not None
        assert "egress refused" in row.last_error
        assert "cloud metadata" in row.last_error


# --- notifications (Apprise) ---------------------------------------------------------------


def notify_outcome(settings: Settings, urls: list[str]) -> tuple[str, Any]:
    from app.egress import policy_for
    from app.iot.alarms import notify
    from app.iot.alarms.models import Alarm
    from app.iot.models import Device

    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    with get_database(settings.sqlalchemy_url).session() as session:
        device = Device(
            id=f"pi-{uuid.uuid4().hex[:6]}",
            name="Smoker",
            mqtt_username="pi",
            notify_urls=urls,
            created_at=now,
        )
        session.add(device)
        session.flush()
        alarm = Alarm(
            device_id=device.id,
            probe_id="meat",
            kind="target_reached",
            message="Brisket reached 93.0 °C",
            opened_at=now - timedelta(seconds=5),
        )
        session.add(alarm)
        session.flush()
        outcome = notify.notify_alarm(alarm, device, "open", now, policy_for(settings))
        return outcome, alarm.open_notified_at


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("json://127.0.0.2:{port}/", "loopback"),
        ("json://localhost:{port}/", "loopback"),
        ("xml://169.254.169.254/", "cloud metadata"),
        ("jsons://[fd00:ec2::254]/", "cloud metadata"),
        ("form://10.0.0.8/", "private"),
        ("gotify://[fd12::1]/token", "unique-local"),
        ("json://127.0.0.1:{own}/", "own ports"),
    ],
)
def test_notifications_refuse_every_range(
    make: Make, victim: Server, caplog: pytest.LogCaptureFixture, kind: str, reason: str
) -> None:
    own = reason == "own ports"  # allow-listed, and still refused
    settings = make(egress={"allow": "127.0.0.0/8"}) if own else make()
    url = kind.format(port=victim.port, own=settings.http_port)
    with caplog.at_level("WARNING", logger="smokehouse.iot.alarms"):
        outcome, notified_at = notify_outcome(settings, [url])
    assert outcome == "refused"
    assert notified_at is not None  # recorded: a refusal is final, retrying cannot help
    [record] = [r for r in caplog.records if "refused" in r.getMessage()]
    assert reason.split()[-1] in record.getMessage()
    assert victim.hits == []


def test_allowed_notifications_still_go_out(make: Make, allowed: Server, victim: Server) -> None:
    settings = make(egress={"allow": "127.0.0.1"})
    outcome, _ = notify_outcome(
        settings, [f"json://127.0.0.1:{allowed.port}/", f"json://127.0.0.2:{victim.port}/"]
    )
    assert outcome == "refused"  # one of the two was refused...
    assert len(allowed.hits) == 1  # ...the allowed one was still sent
    assert victim.hits == []
    payload = allowed.hits[0]
    assert payload == "/"


def test_through_a_worker_the_execution_fails_with_the_refusal(
    tmp_path: Path, victim: Server
) -> None:
    """The whole path: boto3 creates and starts a machine, a worker runs the HTTP Task under
    the default policy, the execution fails AWS-style with the reason."""
    from tests.integration.workflows.stack import stack

    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {"ApiEndpoint.$": "$.url", "Method": "GET"},
                "End": True,
            }
        },
    }
    with stack("embedded", tmp_path, {}, egress={}) as built:
        arn = built.create("imds-probe", definition)
        for url in (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            f"{victim.url}/from-a-worker",
        ):
            described = built.wait(built.start(arn, {"url": url}), 60)
            assert described["status"] == "FAILED"
            assert described["error"] == "States.Http.Socket"
            assert described["cause"].startswith("egress refused:")
    assert victim.hits == []


def test_a_notification_redirected_to_a_refused_address_is_refused(
    make: Make, allowed: Server, victim: Server
) -> None:
    settings = make(egress={"allow": "127.0.0.1"})
    # Apprise's json:// passes ``-name=value`` on as a query parameter of its POST
    redirect = f"json://127.0.0.1:{allowed.port}/redirect?-to={quote(victim.url + '/x', safe='')}"
    outcome, notified_at = notify_outcome(settings, [redirect])
    assert outcome == "refused"
    assert notified_at is not None
    assert allowed.hits
    assert allowed.hits[0].startswith("/redirect")
    assert victim.hits == []


def test_a_notification_host_that_rebinds_is_caught_at_connect(make: Make) -> None:
    """The host name passes the check with a public answer, then resolves to loopback when
    Apprise connects: the connection is refused, the loopback server sees nothing."""
    import socket

    from app.egress import EgressPolicy
    from app.iot.alarms import notify

    local = Server("127.0.0.1")
    answers: list[list[str]] = [["93.184.216.34"]]

    def rebinding(host: str, port: int) -> list[str]:
        if answers:
            return answers.pop()
        return [str(info[4][0]) for info in socket.getaddrinfo(host, port, socket.AF_INET)]

    try:
        policy = EgressPolicy(resolver=rebinding)
        url = f"json://localhost:{local.port}/"
        assert notify.refused(policy, url) is None  # the first answer was public
        assert notify.send([url], "title", "body", policy)  # the second one is refused
        assert local.hits == []
    finally:
        local.close()
