"""GraphQL subscriptions of the thermometer over ``graphql-transport-ws``: a reading published by
another process (as the enrich-and-store worker does) reaches the ``readings`` subscription, in
production mode (Redis) and embedded mode (the amqtt broker); an alarm acknowledged over
GraphQL reaches the ``alarms`` subscription; a client that vanishes leaves no subscription."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from app import realtime
from app.config import Settings
from app.db import get_database
from app.graphql.subscriptions import active_subscriptions
from app.iot.alarms.models import Alarm
from app.iot.models import Device
from app.main import create_app
from tests.integration.cli import cli_env
from tests.integration.test_realtime import embedded_broker  # noqa: F401  (fixture)
from tests.keys import ADMIN_SECRET, KEYS, VIEWER_SECRET, auth, token
from tests.services import ROOT, migrate, require_redis, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

WORKER = textwrap.dedent(
    """
    import time
    from app import realtime
    from app.config import load_settings
    settings = load_settings()
    for seq in range(400):
        realtime.publish(settings, "readings:pi1", {
            "device_id": "pi1", "seq": seq, "ts": "2026-11-26T08:00:00+00:00", "cook_id": 7,
            "probes": [{"probe_id": "meat", "temp_c": 70.5, "status": "ok",
                        "rate_c_per_min": 0.2}],
        })
        time.sleep(0.05)
    """
)


@pytest.fixture(params=["redis", "embedded"])
def settings(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Settings:
    database_url = f"sqlite:///{tmp_path / 'live.db'}"
    migrate(database_url)
    if request.param == "redis":
        return settings_factory(
            database_url=database_url, access_keys=KEYS, redis_url=require_redis()
        )
    url = request.getfixturevalue("embedded_broker")
    port = int(url.rsplit(":", 1)[1])
    return settings_factory(database_url=database_url, access_keys=KEYS, embedded_mqtt_port=port)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
    wait_for(lambda: active_subscriptions() == 0, 10, what="subscriptions to end")
    wait_for(lambda: realtime.active_channels() == 0, 10, what="live channels to close")


def subscribe(ws: WebSocketTestSession, query: str, **variables: Any) -> None:
    ws.send_json({"type": "connection_init", "payload": {"x-api-key": token(VIEWER_SECRET)}})
    assert ws.receive_json()["type"] == "connection_ack"
    ws.send_json(
        {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
    )


def next_data(ws: WebSocketTestSession) -> Any:
    message = ws.receive_json()
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message["payload"]
    return message["payload"]["data"]


def worker(settings: Settings) -> subprocess.Popen[bytes]:
    """Another process publishing readings, as enrich-and-store does after storing them."""
    env = cli_env(
        data_dir=settings.data_dir,
        embedded_mqtt_port=settings.embedded_mqtt_port,
        log_format="console",
        **({"redis_url": settings.redis_url} if settings.redis_url else {}),
    )
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-c", WORKER], env=env)


def test_a_reading_published_by_another_process_reaches_the_subscription(
    settings: Settings, client: TestClient
) -> None:
    query = """subscription($d: ID!) { readings(deviceId: $d) {
        deviceId seq ts cookId probes { probeId tempC status rateCPerMin } } }"""
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        subscribe(ws, query, d="pi1")
        wait_for(lambda: active_subscriptions("readings") == 1, 10)
        process = worker(settings)
        try:
            first = next_data(ws)["readings"]
            second = next_data(ws)["readings"]
        finally:
            process.kill()
            process.wait()
        assert first["deviceId"] == "pi1"
        assert first["cookId"] == 7
        assert datetime.fromisoformat(first["ts"]) == T0
        assert first["probes"] == [
            {"probeId": "meat", "tempC": 70.5, "status": "ok", "rateCPerMin": 0.2}
        ]
        assert second["seq"] > first["seq"]
    # the client went away without "complete": the fixture checks that nothing is left


def test_an_acknowledged_alarm_reaches_the_alarm_subscriptions(
    settings: Settings, client: TestClient
) -> None:
    with get_database(settings.sqlalchemy_url).session() as session:
        session.add(Device(id="pi1", name="Smoker", mqtt_username="pi1", created_at=T0))
        session.flush()
        alarm = Alarm(
            device_id="pi1",
            probe_id="meat",
            kind="target_reached",
            state="open",
            message="Brisket reached its target",
            opened_at=T0,
        )
        session.add(alarm)
        session.flush()
        alarm_id = alarm.id
    query = (
        "subscription($d: ID) { alarms(deviceId: $d) { id deviceId kind state acknowledgedAt } }"
    )
    with (
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as one,
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as every,
    ):
        subscribe(one, query, d="pi1")
        subscribe(every, query)  # every device
        wait_for(lambda: active_subscriptions("alarms") == 2, 10)
        wait_for(lambda: realtime.active_channels() == 2, 10)
        response = client.post(
            "/graphql",
            json={"query": f"mutation {{ acknowledgeAlarm(id: {alarm_id}) {{ state }} }}"},
            headers=auth(ADMIN_SECRET),
        )
        assert response.json()["data"]["acknowledgeAlarm"]["state"] == "acknowledged"
        for ws in (one, every):
            got = next_data(ws)["alarms"]
            assert (got["id"], got["deviceId"], got["state"]) == (alarm_id, "pi1", "acknowledged")
            assert got["acknowledgedAt"] is not None
