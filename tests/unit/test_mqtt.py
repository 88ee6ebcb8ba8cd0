"""``SMOKEHOUSE_MQTT_URL`` parsing: every MQTT user (ingest, live fan-out, bus target, health)
connects where this says."""

from __future__ import annotations

import pytest

from app.mqtt import MqttEndpoint


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", MqttEndpoint("broker", 1883, tls=False)),
        ("mqtts://broker", MqttEndpoint("broker", 8883, tls=True)),
        ("ssl://broker:9999", MqttEndpoint("broker", 9999, tls=True)),
        ("mqtt://u%40x:p%3Aw@10.0.0.2:1884", MqttEndpoint("10.0.0.2", 1884, False, "u@x", "p:w")),
        ("mqtt://", MqttEndpoint("127.0.0.1", 1883, tls=False)),
    ],
)
def test_from_url(url: str, expected: MqttEndpoint) -> None:
    assert MqttEndpoint.from_url(url) == expected
