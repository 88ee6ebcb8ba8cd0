"""The whole bus through the front door: boto3 against a running ``smokehouse run`` (embedded
mode) creates a connection, an API destination, a rule and an archive; PutEvents reaches an HTTP
endpoint served by the test; a replay sends the archived events again, marked ``replay-name``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import update

from app.bus.models import Rule
from app.config import load_settings
from app.db import get_database
from app.schedules.models import Schedule
from tests.integration.cli import cli_env, smokehouse_argv
from tests.services import RUN_READY_SECONDS, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY_ID, SECRET = "AKE2E", "e2e-key-8Wr3Tn6Yq1Bm4Kd7Zs2"


class Receiver:
    """A tiny HTTP endpoint that records every request (the API destination's far side)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[str]:
    http_port = free_port()
    env = cli_env(
        data_dir=tmp_path / "data",
        http_port=http_port,
        embedded_mqtt_port=free_port(),
        access_keys=f"{KEY_ID}:{SECRET}:admin",
        bus_sweep_grace_seconds=2,
        egress_allow="127.0.0.1",  # the receiver; the API's own port stays refused
    )
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        smokehouse_argv("run"), env=env, stdout=log, stderr=log, start_new_session=True
    )
    base = f"http://127.0.0.1:{http_port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, RUN_READY_SECONDS, interval=0.3, what="smokehouse run to be ready")
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=40)


def test_boto3_put_events_reaches_an_http_destination_and_replays(
    running: str, receiver: Receiver
) -> None:
    events = boto3.client(
        "events",
        endpoint_url=running,
        region_name="eu-west-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    connection = events.create_connection(
        Name="receiver",
        AuthorizationType="API_KEY",
        AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "x-token", "ApiKeyValue": "t0k"}},
    )
    destination = events.create_api_destination(
        Name="receiver",
        ConnectionArn=connection["ConnectionArn"],
        InvocationEndpoint=f"{receiver.url}/orders/*",
        HttpMethod="POST",
    )
    events.put_rule(
        Name="orders-to-http",
        EventPattern=json.dumps(
            {"source": ["shop.orders"], "detail": {"total": [{"numeric": [">", 100]}]}}
        ),
    )
    result = events.put_targets(
        Rule="orders-to-http",
        Targets=[
            {
                "Id": "http",
                "Arn": destination["ApiDestinationArn"],
                "HttpParameters": {"PathParameterValues": ["$.detail.order"]},
                "InputTransformer": {
                    "InputPathsMap": {"order": "$.detail.order", "total": "$.detail.total"},
                    "InputTemplate": '{"order": <order>, "total": <total>, '
                    '"event": <aws.events.event.json>}',
                },
            }
        ],
    )
    assert result["FailedEntryCount"] == 0
    bus_arn = events.describe_event_bus()["Arn"]
    events.create_archive(ArchiveName="orders", EventSourceArn=bus_arn)

    before = datetime.now(UTC) - timedelta(seconds=1)
    put = events.put_events(
        Entries=[
            {
                "Source": "shop.orders",
                "DetailType": "Order Placed",
                "Detail": json.dumps({"order": "A-1", "total": 250}),
            },
            {
                "Source": "shop.orders",
                "DetailType": "Order Placed",
                "Detail": json.dumps({"order": "A-2", "total": 20}),  # not > 100: no delivery
            },
            {"Source": "shop.orders", "DetailType": "Order Placed", "Detail": "not json"},
        ]
    )
    assert put["FailedEntryCount"] == 1
    assert put["Entries"][2]["ErrorCode"] == "MalformedDetail"

    wait_for(lambda: receiver.requests, timeout=30, what="the HTTP destination to be called")
    [request] = receiver.requests
    assert request["path"] == "/orders/A-1"
    assert request["headers"]["x-token"] == "t0k"
    assert request["headers"]["User-Agent"] == "Amazon/EventBridge/ApiDestinations"
    body = json.loads(request["body"])
    assert body["order"] == "A-1"
    assert body["total"] == 250

    time.sleep(1.1)  # the replay window must end in the past
    events.start_replay(
        ReplayName="orders-again",
        EventSourceArn=events.describe_archive(ArchiveName="orders")["ArchiveArn"],
        EventStartTime=before,
        EventEndTime=datetime.now(UTC),
        Destination={"Arn": bus_arn},
    )
    wait_for(
        lambda: events.describe_replay(ReplayName="orders-again")["State"] == "COMPLETED",
        timeout=30,
        what="the replay to complete",
    )
    wait_for(lambda: len(receiver.requests) == 2, timeout=30, what="the replayed delivery")
    replayed = json.loads(receiver.requests[1]["body"])
    assert replayed["order"] == "A-1"
    assert replayed["event"]["replay-name"] == "orders-again"
    assert "replay-name" not in body["event"]


def test_boto3_scheduled_rule_puts_a_scheduled_event_that_reaches_its_target(
    running: str, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make run`` fires scheduled rules: a tick's Scheduled Event goes through the bus to an
    HTTP destination (the tick is brought forward in the database, not waited a minute for)."""
    events = boto3.client(
        "events",
        endpoint_url=running,
        region_name="eu-west-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    connection = events.create_connection(
        Name="ticks",
        AuthorizationType="API_KEY",
        AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "x-token", "ApiKeyValue": "t0k"}},
    )
    destination = events.create_api_destination(
        Name="ticks",
        ConnectionArn=connection["ConnectionArn"],
        InvocationEndpoint=f"{receiver.url}/ticks",
        HttpMethod="POST",
    )
    arn = events.put_rule(Name="every-minute", ScheduleExpression="rate(1 minute)")["RuleArn"]
    events.put_targets(
        Rule="every-minute", Targets=[{"Id": "http", "Arn": destination["ApiDestinationArn"]}]
    )

    for name in list(os.environ):
        if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    database = get_database(load_settings(data_dir=tmp_path / "data").sqlalchemy_url)
    tick = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    with database.session() as session:
        session.execute(update(Rule).where(Rule.name == "every-minute").values(next_fire_at=tick))

    wait_for(lambda: receiver.requests, timeout=30, what="the scheduled event to arrive")
    [request] = receiver.requests
    event = json.loads(request["body"])
    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["detail"] == {}
    assert event["resources"] == [arn]
    assert event["time"] == tick.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_boto3_scheduler_schedule_starts_a_state_machine(
    running: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make run`` fires EventBridge Scheduler schedules: the schedule's Input starts an
    execution of its state machine (the due time is brought forward in the database)."""

    def aws(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=running,
            region_name="eu-west-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    sfn, scheduler = aws("stepfunctions"), aws("scheduler")
    machine = sfn.create_state_machine(
        name="nightly",
        definition=json.dumps(
            {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
        ),
        roleArn="arn:aws:iam::000000000000:role/sfn",
    )["stateMachineArn"]
    scheduler.create_schedule(
        Name="nightly",
        ScheduleExpression="cron(0 3 * * ? *)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": machine,
            "RoleArn": "arn:aws:iam::000000000000:role/scheduler",
            "Input": '{"older_than_days": 30}',
        },
    )
    for name in list(os.environ):
        if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    database = get_database(load_settings(data_dir=tmp_path / "data").sqlalchemy_url)
    due = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    with database.session() as session:
        session.execute(update(Schedule).where(Schedule.name == "nightly").values(next_fire_at=due))

    def finished() -> list[dict[str, Any]]:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        return [e for e in executions if e["status"] == "SUCCEEDED"]

    wait_for(finished, timeout=40, what="the schedule's execution to succeed")
    [execution] = sfn.list_executions(stateMachineArn=machine)["executions"]
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"older_than_days": 30}
    assert scheduler.get_schedule(Name="nightly")["State"] == "ENABLED"
