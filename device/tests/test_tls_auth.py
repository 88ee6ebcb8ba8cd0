"""TLS (own CA) + username/password against a real Mosquitto listener."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from device_harness import Broker, Collector, wait_until

from smokehouse_device.agent import Clock, Sampler
from smokehouse_device.buffer import ReadingBuffer
from smokehouse_device.publisher import MqttPublisher, MqttSettings
from smokehouse_device.readings import Reading

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (shutil.which("openssl") and shutil.which("mosquitto_passwd")),
        reason="needs openssl and mosquitto_passwd",
    ),
]


def run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        "openssl",
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=smokehouse test CA",
        cwd=d,
    )
    run(
        "openssl",
        "req",
        *ec,
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    run("mosquitto_passwd", "-c", "-b", "passwd", "pitmaster", "s3cret", cwd=d)
    return d


@pytest.fixture
def tls_broker(pki: Path, make_broker: Callable[..., Broker]) -> Broker:
    extra = (
        f"cafile {pki / 'ca.crt'}\n"
        f"certfile {pki / 'server.crt'}\n"
        f"keyfile {pki / 'server.key'}\n"
        "allow_anonymous false\n"
        f"password_file {pki / 'passwd'}\n"
    )
    return make_broker(extra=extra)


def publisher(tmp_path: Path, pki: Path, port: int, password: str) -> MqttPublisher:
    settings = MqttSettings(
        host="127.0.0.1",
        port=port,
        tls=True,
        ca_file=str(pki / "ca.crt"),
        username="pitmaster",
        password=password,
        reconnect_min_s=0.2,
        reconnect_max_s=0.5,
    )
    return MqttPublisher(settings, "tls1", ReadingBuffer(tmp_path / f"{password}.sqlite3"))


class Probe:
    id = "pit"

    def read(self) -> Reading:
        return Reading.ok(107.0)

    def close(self) -> None:
        pass


def test_tls_with_password(
    tmp_path: Path, pki: Path, tls_broker: Broker, collectors: Callable[..., Collector]
) -> None:
    watcher = collectors(
        tls_broker.port,
        "smokehouse/tls1/#",
        username="pitmaster",
        password="s3cret",
        ca_file=str(pki / "ca.crt"),
    )
    pub = publisher(tmp_path, pki, tls_broker.port, "s3cret")
    pub.start()
    try:
        assert pub.wait_connected(10)
        sampler = Sampler("tls1", [Probe()], pub.buffer, Clock(), lambda r: pub.notify())
        sampler.sample_once()
        assert wait_until(lambda: len(watcher.telemetry()) == 1, 10)
        assert watcher.telemetry()[0]["probes"][0]["temp_c"] == 107.0
        assert ("online", False) in watcher.statuses()
    finally:
        pub.stop()
        pub.buffer.close()


def test_wrong_password_is_refused(tmp_path: Path, pki: Path, tls_broker: Broker) -> None:
    pub = publisher(tmp_path, pki, tls_broker.port, "wrong")
    pub.start()
    try:
        assert not pub.wait_connected(1.5)
    finally:
        pub.stop()
        pub.buffer.close()
    assert "disconnected, not authorised" in tls_broker.log_tail()
