"""TOML configuration, validated up front with clear messages (every problem, not just the first).

See ``config.example.toml`` for the annotated format.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from smokehouse_device.drivers import ads1115, ds18b20
from smokehouse_device.drivers.thermistor import PRESETS
from smokehouse_device.publisher import MqttSettings

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ID_RULE = "1-64 characters: letters, digits, '_', '.', '-' (it is an MQTT topic level)"
DEFAULT_BUFFER_PATH = Path("/var/lib/smokehouse-device/buffer.sqlite3")


class ConfigError(Exception):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} configuration {noun}:\n{lines}")


@dataclass(frozen=True, slots=True)
class BufferSettings:
    path: Path = DEFAULT_BUFFER_PATH
    max_readings: int = 100_000


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    enabled: bool = False
    seed: int = 42
    time_scale: float = 1.0
    setpoint_c: float = 110.0


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    id: str
    driver: str
    calibration_offset_c: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    device_id: str
    mqtt: MqttSettings
    buffer: BufferSettings = field(default_factory=BufferSettings)
    sample_interval_s: float = 5.0
    probes: tuple[ProbeConfig, ...] = ()
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    log_level: str = "INFO"


# -- a tiny schema checker ---------------------------------------------------------------------

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Field:
    kind: type | tuple[type, ...]
    default: Any = _MISSING
    check: Callable[[Any], str | None] | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
    names.update({list: "a list", dict: "a table"})
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _coerce(value: Any, kind: type | tuple[type, ...]) -> tuple[bool, Any]:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False, value
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return True, float(value)
    return isinstance(value, kinds), value


def _check(
    where: str, table: Mapping[str, Any], schema: Mapping[str, Field], problems: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in table:
        if key not in schema:
            hint = difflib.get_close_matches(key, list(schema), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(f"{where}{key}: unknown key{suggestion}")
    for key, spec in schema.items():
        if key not in table:
            if spec.required:
                problems.append(f"{where}{key}: required")
            else:
                out[key] = spec.default
            continue
        ok, value = _coerce(table[key], spec.kind)
        if not ok:
            problems.append(f"{where}{key}: expected {_type_name(spec.kind)}, got {table[key]!r}")
            continue
        if spec.check is not None and (message := spec.check(value)) is not None:
            problems.append(f"{where}{key}: {message}")
            continue
        out[key] = value
    return out


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _one_of(*allowed: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(map(repr, allowed))}"

    return check


def _in_range(lo: float, hi: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if lo <= value <= hi else f"must be between {lo} and {hi}"

    return check


def _valid_id(value: str) -> str | None:
    return None if ID_RE.match(value) else f"{value!r} is not a valid id ({ID_RULE})"


def _valid_sensor(value: str) -> str | None:
    if ds18b20.valid_sensor_id(value):
        return None
    return f"{value!r} is not a DS18B20 id (expected 28- and 12 hex digits, e.g. 28-0316a2795aff)"


def _valid_coefficients(value: list[Any]) -> str | None:
    if len(value) == 3 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return None
    return "must be a list of three numbers [A, B, C]"


TOP_SCHEMA: dict[str, Field] = {
    "device_id": Field(str, check=_valid_id),
    "sample_interval_s": Field(float, 5.0, _in_range(0.05, 3600)),
    "log_level": Field(str, "INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR")),
    "mqtt": Field(dict, {}),
    "buffer": Field(dict, {}),
    "simulator": Field((bool, dict), False),
    "probes": Field(list, []),
}
MQTT_SCHEMA: dict[str, Field] = {
    "url": Field(str, "mqtt://127.0.0.1:1883"),
    "username": Field(str, None),
    "password": Field(str, None),
    "password_file": Field(str, None),
    "ca_file": Field(str, None),
    "cert_file": Field(str, None),
    "key_file": Field(str, None),
    "client_id": Field(str, None, _valid_id),
    "keepalive_s": Field(int, 30, _in_range(5, 3600)),
    "reconnect_min_s": Field(float, 1.0, _in_range(0.05, 3600)),
    "reconnect_max_s": Field(float, 60.0, _in_range(0.05, 3600)),
    "max_inflight": Field(int, 100, _in_range(1, 65000)),
}
BUFFER_SCHEMA: dict[str, Field] = {
    "path": Field(str, str(DEFAULT_BUFFER_PATH)),
    "max_readings": Field(int, 100_000, _in_range(1, 100_000_000)),
}
SIMULATOR_SCHEMA: dict[str, Field] = {
    "enabled": Field(bool, True),
    "seed": Field(int, 42),
    "time_scale": Field(float, 1.0, _in_range(0.01, 100_000)),
    "setpoint_c": Field(float, 110.0, _in_range(50, 400)),
}
PROBE_COMMON: dict[str, Field] = {
    "id": Field(str, check=_valid_id),
    "driver": Field(str, check=_one_of("ds18b20", "max31855", "max31865", "ads1115")),
    "calibration_offset_c": Field(float, 0.0, _in_range(-50, 50)),
}
SPI_FIELDS: dict[str, Field] = {
    "bus": Field(int, 0, _non_negative),
    "device": Field(int, 0, _non_negative),
}
DRIVER_SCHEMAS: dict[str, dict[str, Field]] = {
    "ds18b20": {
        "sensor": Field(str, check=_valid_sensor),
        "base_path": Field(str, str(ds18b20.DEFAULT_BASE_PATH)),
        "source": Field(str, "auto", _one_of("auto", "w1_slave", "temperature")),
    },
    "max31855": {
        **SPI_FIELDS,
        "max_speed_hz": Field(int, 5_000_000, _in_range(1000, 5_000_000)),
        "nist_correction": Field(bool, True),
    },
    "max31865": {
        **SPI_FIELDS,
        "max_speed_hz": Field(int, 1_000_000, _in_range(1000, 5_000_000)),
        "rtd": Field(str, "pt100", _one_of("pt100", "pt1000")),
        "r_ref": Field(float, None, _positive),
        "wires": Field(int, 3, _one_of(2, 3, 4)),
        "filter_hz": Field(int, 50, _one_of(50, 60)),
    },
    "ads1115": {
        "bus": Field(int, 1, _non_negative),
        "address": Field(int, ads1115.DEFAULT_ADDRESS, _one_of(0x48, 0x49, 0x4A, 0x4B)),
        "channel": Field(int, check=_one_of(0, 1, 2, 3)),
        "preset": Field(str, None, _one_of(*PRESETS)),
        "coefficients": Field(list, None, _valid_coefficients),
        "series_resistor_ohm": Field(float, None, _positive),
        "placement": Field(str, "low", _one_of("low", "high")),
        "supply_v": Field(float, 3.3, _in_range(0.5, 5.5)),
        "fsr_v": Field(float, 4.096, _one_of(*ads1115.PGA)),
        "data_rate": Field(int, 128, _one_of(*ads1115.DATA_RATE)),
        "open_ratio": Field(float, 0.995, _in_range(0.5, 1.0)),
        "short_ratio": Field(float, 0.002, _in_range(0.0, 0.5)),
    },
}


def parse_broker_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://…`` → (host, port, tls, user, password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: only scheme://host:port is allowed")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: invalid port") from None
    tls = parts.scheme == "mqtts"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port or (8883 if tls else 1883), tls, user, password


def _mqtt_settings(
    device_id: str, table: dict[str, Any], base_dir: Path, problems: list[str]
) -> MqttSettings:
    m = _check("mqtt.", table, MQTT_SCHEMA, problems)
    try:
        host, port, tls, url_user, url_password = parse_broker_url(m.get("url") or "")
    except ValueError as exc:
        problems.append(f"mqtt.url: {exc}")
        host, port, tls, url_user, url_password = "127.0.0.1", 1883, False, None, None

    def path(key: str) -> str | None:
        value = m.get(key)
        if value is None:
            return None
        resolved = (base_dir / value).resolve()
        if not resolved.is_file():
            problems.append(f"mqtt.{key}: {resolved} does not exist or is not a file")
        return str(resolved)

    username = m.get("username") or url_user
    password = m.get("password") or url_password
    if m.get("password") is not None and m.get("password_file") is not None:
        problems.append("mqtt.password and mqtt.password_file: set one, not both")
    elif m.get("password_file") is not None:
        pw_path = path("password_file")
        if pw_path is not None and Path(pw_path).is_file():
            try:
                password = Path(pw_path).read_text().rstrip("\r\n")
            except OSError as exc:
                problems.append(f"mqtt.password_file: cannot read {pw_path}: {exc}")
    if password is not None and username is None:
        problems.append("mqtt.password needs mqtt.username")
    ca_file, cert_file, key_file = path("ca_file"), path("cert_file"), path("key_file")
    if not tls and any(v is not None for v in (ca_file, cert_file, key_file)):
        problems.append("mqtt: ca_file/cert_file/key_file need an mqtts:// url (TLS)")
    if key_file is not None and cert_file is None:
        problems.append("mqtt.key_file needs mqtt.cert_file")
    min_s, max_s = m.get("reconnect_min_s", 1.0), m.get("reconnect_max_s", 60.0)
    if min_s is not None and max_s is not None and min_s > max_s:
        problems.append("mqtt.reconnect_min_s must not exceed mqtt.reconnect_max_s")
    return MqttSettings(
        host=host,
        port=port,
        tls=tls,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        username=username,
        password=password,
        client_id=m.get("client_id") or f"smokehouse-device-{device_id}",
        keepalive_s=m.get("keepalive_s", 30),
        reconnect_min_s=min_s or 1.0,
        reconnect_max_s=max_s or 60.0,
        max_inflight=m.get("max_inflight", 100),
    )


def _probe(index: int, raw: Any, base_dir: Path, problems: list[str]) -> ProbeConfig | None:
    where = f"probes[{index}]."
    if not isinstance(raw, dict):
        problems.append(f"probes[{index}]: expected a table ([[probes]]), got {raw!r}")
        return None
    driver = raw.get("driver")
    driver_schema = DRIVER_SCHEMAS.get(driver, {}) if isinstance(driver, str) else {}
    values = _check(where, raw, {**PROBE_COMMON, **driver_schema}, problems)
    if "id" not in values or "driver" not in values:
        return None
    params = {k: v for k, v in values.items() if k not in PROBE_COMMON}
    if driver == "ads1115" and (params.get("preset") is None) == (
        params.get("coefficients") is None
    ):
        problems.append(
            f"{where}preset/coefficients: set exactly one (presets: {', '.join(PRESETS)})"
        )
    if driver == "ds18b20" and not Path(params["base_path"]).is_absolute():
        params["base_path"] = str((base_dir / params["base_path"]).resolve())
    return ProbeConfig(
        id=values["id"],
        driver=values["driver"],
        calibration_offset_c=values.get("calibration_offset_c", 0.0),
        params=params,
    )


def parse_config(
    data: Mapping[str, Any], *, source: str = "<config>", base_dir: Path | None = None
) -> DeviceConfig:
    """Validate a decoded TOML document. Raises :class:`ConfigError` listing every problem."""
    base_dir = base_dir or Path.cwd()
    problems: list[str] = []
    top = _check("", data, TOP_SCHEMA, problems)
    device_id = top.get("device_id") or "invalid"
    mqtt_settings = _mqtt_settings(device_id, top.get("mqtt") or {}, base_dir, problems)

    buf = _check("buffer.", top.get("buffer") or {}, BUFFER_SCHEMA, problems)
    buffer_path = Path(buf.get("path") or DEFAULT_BUFFER_PATH)
    if not buffer_path.is_absolute():
        buffer_path = (base_dir / buffer_path).resolve()
    buffer = BufferSettings(path=buffer_path, max_readings=buf.get("max_readings") or 100_000)

    sim_raw = top.get("simulator", False)
    if isinstance(sim_raw, bool):
        simulator = SimulatorSettings(enabled=sim_raw)
    elif isinstance(sim_raw, dict):
        s = _check("simulator.", sim_raw, SIMULATOR_SCHEMA, problems)
        simulator = SimulatorSettings(
            enabled=s.get("enabled", True),
            seed=s.get("seed", 42),
            time_scale=s.get("time_scale") or 1.0,
            setpoint_c=s.get("setpoint_c") or 110.0,
        )
    else:
        simulator = SimulatorSettings()

    probes: list[ProbeConfig] = []
    for index, raw in enumerate(top.get("probes") or []):
        probe = _probe(index, raw, base_dir, problems)
        if probe is not None:
            probes.append(probe)
    seen: set[str] = set()
    for probe in probes:
        if probe.id in seen:
            problems.append(f"probes: duplicate id {probe.id!r}")
        seen.add(probe.id)
    if not probes and not simulator.enabled:
        problems.append("probes: no probes configured (add [[probes]] or set simulator = true)")

    if problems:
        raise ConfigError(source, problems)
    return DeviceConfig(
        device_id=device_id,
        mqtt=mqtt_settings,
        buffer=buffer,
        sample_interval_s=top["sample_interval_s"],
        probes=tuple(probes),
        simulator=simulator,
        log_level=top["log_level"],
    )


def load_config(path: Path | str) -> DeviceConfig:
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    return parse_config(data, source=str(path), base_dir=path.parent.resolve())
