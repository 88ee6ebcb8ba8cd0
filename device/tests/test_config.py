from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from smokehouse_device.config import ConfigError, load_config, parse_broker_url, parse_config

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "device_id": "pi-1",
        "mqtt": {"url": "mqtt://127.0.0.1:1883"},
        "probes": [{"id": "pit", "driver": "max31855"}],
    }
    data.update(overrides)
    return data


def problems(data: dict[str, Any], tmp_path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    return info.value.problems


def test_example_config_is_valid(tmp_path: Path) -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    # The example points at files on a Pi; make them exist here.
    for key in ("password_file", "ca_file"):
        target = tmp_path / Path(data["mqtt"][key]).name
        target.write_text("secret\n")
        data["mqtt"][key] = str(target)
    config = parse_config(data, base_dir=tmp_path)
    assert config.device_id == "backyard-pi"
    assert config.mqtt.tls
    assert config.mqtt.port == 8883
    assert config.mqtt.password == "secret"
    assert [p.id for p in config.probes] == ["pit", "pit-rtd", "brisket", "pork-butt", "ambient"]
    brisket = config.probes[2]
    assert brisket.calibration_offset_c == -0.4
    assert brisket.params["preset"] == "maverick-et732"
    assert brisket.params["address"] == 0x48


def test_minimal_defaults() -> None:
    config = parse_config(minimal())
    assert config.sample_interval_s == 5.0
    assert config.mqtt.host == "127.0.0.1"
    assert not config.mqtt.tls
    assert config.mqtt.client_id == "smokehouse-device-pi-1"
    assert config.buffer.max_readings == 100_000
    assert config.probes[0].params["nist_correction"] is True
    assert not config.simulator.enabled


def test_simulator_true_needs_no_probes() -> None:
    config = parse_config({"device_id": "sim", "simulator": True})
    assert config.simulator.enabled
    assert config.probes == ()


def test_simulator_table() -> None:
    config = parse_config(
        {"device_id": "sim", "simulator": {"seed": 3, "time_scale": 60, "setpoint_c": 120}}
    )
    assert config.simulator.enabled
    assert config.simulator.seed == 3
    assert config.simulator.time_scale == 60.0


def test_unknown_key_suggests_the_right_one() -> None:
    data = minimal(
        probes=[{"id": "meat", "driver": "ads1115", "chanel": 0, "preset": "maverick-et73"}]
    )
    found = problems(data)
    assert "probes[0].chanel: unknown key (did you mean 'channel'?)" in found
    assert "probes[0].channel: required" in found


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "device_id": "has/slash",
        "sample_interval_s": -1,
        "mqtt": {"url": "http://x", "max_inflight": "many"},
        "probes": [
            {"id": "a", "driver": "max31855"},
            {"id": "a", "driver": "thermocouple"},
            {"id": "b", "driver": "ds18b20", "sensor": "29-123"},
            "oops",
        ],
    }
    found = problems(data)
    text = "\n".join(found)
    assert "device_id: 'has/slash' is not a valid id" in text
    assert "sample_interval_s: must be between" in text
    assert "mqtt.url: 'http://x': scheme must be mqtt:// or mqtts://" in text
    assert "mqtt.max_inflight: expected an integer, got 'many'" in text
    assert "probes[1].driver: must be one of" in text
    assert "probes[2].sensor: '29-123' is not a DS18B20 id" in text
    assert "probes[3]: expected a table" in text
    assert len(found) >= 7


def test_duplicate_probe_ids() -> None:
    data = minimal(
        probes=[{"id": "pit", "driver": "max31855"}, {"id": "pit", "driver": "max31865"}]
    )
    assert "probes: duplicate id 'pit'" in problems(data)


def test_no_probes_and_no_simulator() -> None:
    assert any("no probes configured" in p for p in problems(minimal(probes=[])))


def test_ads1115_needs_exactly_one_of_preset_or_coefficients() -> None:
    base = {"id": "m", "driver": "ads1115", "channel": 0}
    found = problems(minimal(probes=[base]))
    assert any("preset/coefficients: set exactly one" in p for p in found)
    both = {**base, "preset": "maverick-et73", "coefficients": [1, 2, 3]}
    assert any("set exactly one" in p for p in problems(minimal(probes=[both])))
    bad = {**base, "coefficients": [1, 2]}
    assert any("three numbers" in p for p in problems(minimal(probes=[bad])))
    unknown = {**base, "preset": "maverick-et99"}
    assert any("preset: must be one of" in p for p in problems(minimal(probes=[unknown])))


def test_types_are_checked() -> None:
    data = minimal(
        probes=[{"id": "pit", "driver": "max31855", "bus": "zero", "nist_correction": 1}]
    )
    found = problems(data)
    assert "probes[0].bus: expected an integer, got 'zero'" in found
    assert "probes[0].nist_correction: expected true/false, got 1" in found
    # Booleans are not numbers.
    found = problems(minimal(sample_interval_s=True))
    assert "sample_interval_s: expected a number, got True" in found


def test_password_and_password_file_conflict(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    found = problems(
        minimal(
            mqtt={"url": "mqtt://h", "username": "u", "password": "x", "password_file": str(pw)}
        ),
        tmp_path,
    )
    assert "mqtt.password and mqtt.password_file: set one, not both" in found


def test_password_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    config = parse_config(
        minimal(mqtt={"url": "mqtt://h", "username": "u", "password_file": "pw"}),
        base_dir=tmp_path,
    )
    assert config.mqtt.password == "hunter2"


def test_missing_files_and_plain_tcp_tls_options(tmp_path: Path) -> None:
    found = problems(minimal(mqtt={"url": "mqtt://h", "ca_file": "nope.crt"}), tmp_path)
    assert any("mqtt.ca_file:" in p and "does not exist" in p for p in found)
    assert "mqtt: ca_file/cert_file/key_file need an mqtts:// url (TLS)" in found


def test_password_needs_username() -> None:
    assert "mqtt.password needs mqtt.username" in problems(minimal(mqtt={"password": "x"}))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", ("broker", 1883, False, None, None)),
        ("mqtts://broker", ("broker", 8883, True, None, None)),
        ("mqtt://10.0.0.2:1884", ("10.0.0.2", 1884, False, None, None)),
        ("mqtts://u:p%40ss@b:8884", ("b", 8884, True, "u", "p@ss")),
    ],
)
def test_parse_broker_url(url: str, expected: tuple[Any, ...]) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize("url", ["tcp://b", "mqtt://", "mqtt://b:99999", "mqtt://b/topic"])
def test_parse_broker_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match=r"mqtt://|host|port|only"):
        parse_broker_url(url)


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("device_id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    cfg = tmp_path / "device.toml"
    cfg.write_text('device_id = "pi"\nsimulator = true\n[buffer]\npath = "state/buf.sqlite3"\n')
    assert load_config(cfg).buffer.path == tmp_path / "state" / "buf.sqlite3"


def test_error_message_is_readable() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"device_id": "x", "probes": []}, source="device.toml")
    assert str(info.value).startswith("device.toml: 1 configuration problem:\n  - probes:")
