"""``smokehouse tls init`` makes a CA and a server certificate that a real Mosquitto serves on the
shipped TLS listener (deploy/mosquitto/tls.conf): a client that trusts the CA — paho, and the Pi's
own TLS set-up from device/ — publishes and subscribes; one that doesn't, or dials a name the
certificate doesn't carry, is refused."""

from __future__ import annotations

import os
import queue
import shutil
import ssl
import stat
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from app.iot.tls import init
from tests.integration.cli import run_cli
from tests.services import ROOT, free_port, tcp_open, unavailable, wait_for

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in names}


def test_the_command_writes_a_ca_and_a_server_certificate(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    result = run_cli(
        "tls", "init", "--out", str(out), "--host", "mqtt.example.lan", "--host", "192.168.1.10",
        cwd=tmp_path, data_dir=tmp_path / "data",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {"ca.key", "ca.crt", "server.key", "server.crt"}
    assert mode(out / "ca.key") == 0o600
    assert mode(out / "server.key") == 0o600
    assert mode(out / "ca.crt") == 0o644
    assert mode(out / "server.crt") == 0o644
    assert sans(out / "server.crt") == {"mqtt.example.lan", "192.168.1.10"}
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "mqtts://mqtt.example.lan:8883" in result.stdout
    assert "ca_file" in result.stdout


def test_it_is_idempotent_and_keeps_the_ca_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    first = init(out, ["mqtt.lan"])
    assert first.ca_created
    assert first.server_issued
    ca, server = (out / "ca.crt").read_bytes(), (out / "server.crt").read_bytes()
    again = init(out, ["mqtt.lan"])
    assert not again.ca_created
    assert not again.server_issued
    assert (out / "ca.crt").read_bytes() == ca
    assert (out / "server.crt").read_bytes() == server
    # a new host: a new server certificate, the same CA (devices keep trusting it)
    more = init(out, ["mqtt.lan", "10.0.0.5"])
    assert not more.ca_created
    assert more.server_issued
    assert (out / "ca.crt").read_bytes() == ca
    assert sans(out / "server.crt") == {"mqtt.lan", "10.0.0.5"}
    forced = init(out, ["mqtt.lan"], force=True)
    assert forced.ca_created
    assert (out / "ca.crt").read_bytes() != ca


@pytest.mark.parametrize("hosts", [[], ["bad host"], ["a..b"], ["x/y"]])
def test_bad_hosts_are_refused_and_write_nothing(tmp_path: Path, hosts: list[str]) -> None:
    args = [a for h in hosts for a in ("--host", h)]
    result = run_cli("tls", "init", "--out", str(tmp_path / "tls"), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "tls").exists()


# --- a real Mosquitto on the shipped TLS listener ---------------------------------------------


@contextmanager
def tls_mosquitto(tmp_path: Path, certs: Path) -> Iterator[int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        unavailable("mosquitto")
    port = free_port()
    lines = []
    for line in (ROOT / "deploy/mosquitto/tls.conf").read_text().splitlines():
        if line.startswith("listener "):
            line = f"listener {port} 127.0.0.1"
        lines.append(line.replace("/mosquitto/tls/", f"{certs}/"))
    lines += ["per_listener_settings false", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = tmp_path / "mosquitto-tls.conf"
    conf.write_text("\n".join([*lines, ""]))
    process = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(
            lambda: process.poll() is not None or tcp_open(f"mqtt://127.0.0.1:{port}", port),
            10,
            what="mosquitto's TLS listener",
        )
        assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    certs = tmp_path / "certs"
    init(certs, ["127.0.0.1"])
    with tls_mosquitto(tmp_path, certs) as port:
        yield port, certs


def tls_client(port: int, context: ssl.SSLContext, host: str = "127.0.0.1") -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.tls_set_context(context)
    client.connect(host, port, keepalive=10)
    return client


def test_a_client_trusting_the_ca_publishes_and_subscribes(tls_broker: tuple[int, Path]) -> None:
    port, certs = tls_broker
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    received: queue.Queue[bytes] = queue.Queue()
    subscriber = tls_client(port, context)
    subscribed: queue.Queue[bool] = queue.Queue()
    subscriber.on_message = lambda _c, _u, message: received.put(message.payload)
    subscriber.on_subscribe = lambda *_: subscribed.put(True)
    subscriber.subscribe("smokehouse/pit/telemetry", qos=1)
    subscriber.loop_start()
    publisher = tls_client(port, context)
    publisher.loop_start()
    try:
        assert subscribed.get(timeout=5)
        info = publisher.publish("smokehouse/pit/telemetry", b"over tls", qos=1)
        info.wait_for_publish(5)
        assert received.get(timeout=5) == b"over tls"
        assert isinstance(publisher.socket(), ssl.SSLSocket)
    finally:
        for client in (publisher, subscriber):
            client.disconnect()
            client.loop_stop()


def test_the_pi_side_connects_with_its_ca_file(tls_broker: tuple[int, Path]) -> None:
    from smokehouse_device.publisher import MqttSettings, tls_context

    port, certs = tls_broker
    settings = MqttSettings(host="127.0.0.1", port=port, tls=True, ca_file=str(certs / "ca.crt"))
    client = tls_client(port, tls_context(settings))
    try:
        client.loop_start()
        info = client.publish("smokehouse/pit/status", b"online", qos=1)
        info.wait_for_publish(5)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_broker: tuple[int, Path]) -> None:
    port, _certs = tls_broker
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        tls_client(port, ssl.create_default_context())  # the system store only


def test_a_name_the_certificate_does_not_carry_is_refused(
    tls_broker: tuple[int, Path], tmp_path: Path
) -> None:
    port, certs = tls_broker
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|doesn't match"):
        tls_client(port, context, host="localhost")  # resolves here, but isn't in the SANs
    other = tmp_path / "other-ca"
    init(other, ["127.0.0.1"])  # someone else's CA, same host name
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(port, ssl.create_default_context(cafile=str(other / "ca.crt")))


def test_the_server_trusts_the_ca_named_in_its_mqtt_url(
    tls_broker: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SMOKEHOUSE_MQTT_URL=mqtts://host:8883?ca_file=…`` (a Mosquitto outside compose): the
    server's clients (health probe, bus MQTT target) verify the broker against that CA."""
    from app.bus.targets import TargetFailure
    from app.bus.targets import mqtt as mqtt_target
    from app.mqtt import MqttEndpoint, probe

    port, certs = tls_broker
    trusted = f"mqtts://127.0.0.1:{port}?ca_file={certs / 'ca.crt'}"
    probe(MqttEndpoint.from_url(trusted))
    try:
        mqtt_target.publisher_for(trusted).publish("a/b", b"x", 1, False, 5)
        monkeypatch.setattr(mqtt_target, "TIMEOUT_SECONDS", 1.0)
        with pytest.raises(TargetFailure) as caught:  # the system store doesn't know our CA
            mqtt_target.publisher_for(f"mqtts://127.0.0.1:{port}").publish("a/b", b"x", 1, False, 1)
        assert caught.value.code == "MqttUnavailable"
    finally:
        mqtt_target.close_publishers()
    with pytest.raises(ConnectionError):
        probe(MqttEndpoint.from_url(f"mqtts://127.0.0.1:{port}"))
