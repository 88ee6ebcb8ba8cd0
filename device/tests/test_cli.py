from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from device_harness import Broker, Collector, make_w1_tree, wait_until

from smokehouse_device.agent import Clock, Sampler, read_all
from smokehouse_device.buffer import ReadingBuffer
from smokehouse_device.cli import main
from smokehouse_device.readings import CalibratedProbe, Reading, Status, build_payload, rfc3339


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(text)
    return path


SENSOR = "28-0316a2795aff"
GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"


def ds18b20_config(tmp_path: Path, sensor: str = SENSOR) -> Path:
    make_w1_tree(tmp_path / "w1", {"w1_slave": GOOD}, SENSOR)
    return write(
        tmp_path,
        f"""
device_id = "pi-check"
[[probes]]
id = "ambient"
driver = "ds18b20"
sensor = "{sensor}"
base_path = "w1"
calibration_offset_c = 0.5
""",
    )


def test_check_prints_each_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(ds18b20_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "ambient" in out
    assert "23.62 °C" in out  # 23.125 + 0.5 offset, rounded
    assert f"1-Wire sensors under {tmp_path / 'w1'}: {SENSOR}" in out


def test_check_json_and_failing_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ds18b20_config(tmp_path, sensor="28-000000000001")
    assert main(["check", "--json", "--config", str(cfg)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["probes"][0]["status"] == "open"
    assert report["probes"][0]["temp_c"] is None


def test_check_without_spidev_reports_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("smokehouse_device")
    try:
        import spidev  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("spidev is installed here")
    cfg = write(tmp_path, 'device_id = "pi"\n[[probes]]\nid = "pit"\ndriver = "max31855"\n')
    assert main(["check", "--config", str(cfg)]) == 1
    assert "spidev module is not installed" in capsys.readouterr().out


def test_config_error_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, 'device_id = "pi"\nsample_intervall_s = 5\nsimulator = true\n')
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "sample_intervall_s: unknown key (did you mean 'sample_interval_s'?)" in err


def test_bad_broker_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--broker", "http://x", "--count", "1"]) == 2
    assert "scheme must be mqtt:// or mqtts://" in capsys.readouterr().err


def test_run_simulator_config_publishes(
    tmp_path: Path, broker: Broker, collectors: Callable[..., Collector]
) -> None:
    watcher = collectors(broker.port, "smokehouse/pi-run/#")
    cfg = write(
        tmp_path,
        f"""
device_id = "pi-run"
sample_interval_s = 60
[simulator]
seed = 9
time_scale = 6000
[mqtt]
url = "{broker.url}"
[buffer]
path = "buf.sqlite3"
""",
    )
    assert main(["run", "--config", str(cfg), "--count", "5"]) == 0
    assert wait_until(lambda: len(watcher.telemetry()) == 5, 5)
    assert [p["seq"] for p in watcher.telemetry()] == [1, 2, 3, 4, 5]
    assert wait_until(lambda: watcher.statuses()[-1][0] == "offline", 5)


class Boom:
    id = "boom"

    def read(self) -> Reading:
        raise RuntimeError("driver bug")

    def close(self) -> None:
        pass


class Fixed:
    def __init__(self, probe_id: str, reading: Reading) -> None:
        self.id = probe_id
        self.reading = reading

    def read(self) -> Reading:
        return self.reading

    def close(self) -> None:
        pass


def test_sampler_builds_contract_payload(tmp_path: Path) -> None:
    probes = [
        CalibratedProbe(Fixed("pit", Reading.ok(100.0)), offset_c=1.25),
        CalibratedProbe(Fixed("meat", Reading.short("shorted"))),
        CalibratedProbe(Boom()),
    ]
    buf = ReadingBuffer(tmp_path / "b.sqlite3")
    row = Sampler("pi", probes, buf, Clock()).sample_once()
    payload = json.loads(row.payload)
    assert payload["seq"] == 1
    assert payload["probes"] == [
        {"id": "pit", "temp_c": 101.25, "status": "ok"},
        {"id": "meat", "temp_c": None, "status": "short"},
        {"id": "boom", "temp_c": None, "status": "error"},
    ]
    buf.close()


def test_reading_invariants() -> None:
    with pytest.raises(ValueError, match="finite"):
        Reading(None, Status.OK)
    with pytest.raises(ValueError, match="finite"):
        Reading(float("nan"), Status.OK)
    with pytest.raises(ValueError, match="only an ok"):
        Reading(20.0, Status.OPEN)


def test_rfc3339_utc_z() -> None:
    from datetime import datetime, timedelta, timezone

    ts = datetime(2024, 5, 1, 14, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(ts) == "2024-05-01T12:30:05.123Z"
    with pytest.raises(ValueError, match="timezone"):
        rfc3339(datetime(2024, 5, 1))
    payload = build_payload("d", 7, ts, read_all([Fixed("p", Reading.ok(1.005))]))
    assert payload == {
        "device_id": "d",
        "seq": 7,
        "ts": "2024-05-01T12:30:05.123Z",
        "probes": [{"id": "p", "temp_c": 1.0, "status": "ok"}],
    }


def test_never_imports_the_server_or_hardware_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, smokehouse_device.cli, smokehouse_device.agent\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'app', 'workers', 'fastapi', 'celery', 'spidev', 'smbus2'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
