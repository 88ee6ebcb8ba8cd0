"""The thermometer's settings: ``SMOKEHOUSE_IOT_*``, owned by :class:`IotSettings`.

The prefix predates the tree, so its names cannot gain a sub-prefix without breaking deployments:
the ingest fields sit on ``IotSettings`` itself, the alarm and provisioning fields on its two
nested sections, and ``tests/unit/test_config.py`` checks that no name is read twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings

from app.config.section import section_config

if TYPE_CHECKING:
    from app.config import Settings

IOT_PREFIX = "SMOKEHOUSE_IOT_"


class AlarmSettings(BaseSettings):
    """Alarm thresholds (``SMOKEHOUSE_IOT_OFFLINE_SECONDS``, ``..._STALL_*``, ...)."""

    model_config = section_config(IOT_PREFIX)

    offline_seconds: float = Field(
        default=120.0, gt=0, description="No data this long: the device_offline alarm."
    )
    alarm_hysteresis_c: float = Field(
        default=1.0, ge=0, le=20, description="How far back past its threshold clears an alarm."
    )
    stall_min_c: float = Field(default=65.0, description="The stall band's bottom.")
    stall_max_c: float = Field(default=77.0, description="The stall band's top.")
    stall_minutes: float = Field(
        default=30.0, gt=0, le=600, description="Flat this long in the band: a stall."
    )
    stall_rate_c_per_min: float = Field(
        default=0.1, gt=0, description="Flatter than this (°C/min, either way) counts as flat."
    )

    probe_ok_seconds: float = Field(
        default=10.0, ge=0, description="Reading fine this long clears probe_open."
    )

    @field_validator("stall_max_c")
    @classmethod
    def _band(cls, value: float, info: ValidationInfo) -> float:
        if value <= info.data.get("stall_min_c", value - 1):
            raise ValueError("stall_min_c must be below stall_max_c")
        return value


class ProvisioningSettings(BaseSettings):
    """Mosquitto password/ACL files, how to make Mosquitto reload them, what devices are told."""

    model_config = section_config(IOT_PREFIX)

    mosquitto_password_file: Path | None = Field(
        default=None, description="Mosquitto's password_file; unset: <data dir>/mosquitto/passwd."
    )
    mosquitto_acl_file: Path | None = Field(
        default=None, description="Mosquitto's acl_file; unset: <data dir>/mosquitto/acl."
    )
    mosquitto_pid_file: Path | None = Field(
        default=None,
        description="Mosquitto's pid_file: when set, it gets SIGHUP after the files change.",
    )
    mosquitto_file_mode: str = Field(
        default="0600",
        pattern=r"^0?[0-7]{3}$",
        description="Octal mode of both files (Mosquitto's user must be able to read them: "
        "0640 with a shared group when it runs as another user).",
    )
    device_mqtt_url: str | None = Field(
        default=None,
        description="The broker URL devices use, for the printed device config; unset: "
        "SMOKEHOUSE_MQTT_URL without its credentials.",
    )
    service_write_topics: str = Field(
        default="",
        description="Comma-separated topic filters the server's MQTT user may also publish to "
        "(e.g. for arn:smokehouse:mqtt bus targets), besides homeassistant/#.",
    )
    discovery_prefix: str = Field(
        default="homeassistant",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Home Assistant's MQTT discovery prefix.",
    )
    home_assistant_username: str = Field(
        default="homeassistant",
        description="Home Assistant's MQTT user (reads discovery configs and device topics); "
        "it exists once `smokehouse device home-assistant-credentials` gave it a password.",
    )
    discovery_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="How long a discovery publish waits for its PUBACK."
    )

    @field_validator("device_mqtt_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("use mqtt://host:port or mqtts://host:port")
        return value or None

    def password_file(self, settings: Settings) -> Path:
        return self.mosquitto_password_file or settings.data_dir / "mosquitto" / "passwd"

    def acl_file(self, settings: Settings) -> Path:
        return self.mosquitto_acl_file or settings.data_dir / "mosquitto" / "acl"

    @property
    def file_mode(self) -> int:
        return int(self.mosquitto_file_mode, 8)

    @property
    def extra_service_write_topics(self) -> list[str]:
        return [t.strip() for t in self.service_write_topics.split(",") if t.strip()]


class IotSettings(BaseSettings):
    """Ingest, enrichment, cooks and retention; the alarm and provisioning fields are read by
    the two nested sections (each ``SMOKEHOUSE_IOT_*`` name has exactly one reader)."""

    model_config = section_config(IOT_PREFIX)

    accept_unknown_devices: bool | None = Field(
        default=None,
        description="Take telemetry from devices nobody provisioned (creating them). "
        "Unset: yes in embedded mode (demos), no in production.",
    )
    max_payload_bytes: int = Field(default=128 * 1024, gt=0, le=256 * 1024)
    min_temp_c: float = Field(default=-60.0, description="Colder is a sensor fault.")
    max_temp_c: float = Field(default=1000.0, description="Hotter is a sensor fault.")
    max_future_seconds: float = Field(
        default=86400.0, gt=0, description="A reading stamped further ahead is refused."
    )
    batch_max_messages: int = Field(default=500, ge=1, le=5000)
    batch_max_wait_seconds: float = Field(
        default=0.1,
        ge=0,
        description="How long the first message of a batch waits for more, from its arrival: "
        "longer means fewer, larger batches (fewer workflow runs) but later live updates. Under "
        "load batches fill to batch_max_messages first (see bench/ingest.py).",
    )
    queue_size: int = Field(default=20000, ge=100, description="Messages held before the DB.")
    receive_maximum: int = Field(
        default=1000, ge=1, le=65535, description="Unacknowledged messages the broker may send."
    )
    client_id: str = Field(default="", description="Unset: smokehouse-ingest-<hostname>.")
    share_group: str = Field(default="smokehouse", pattern=r"^[A-Za-z0-9_-]+$")
    session_expiry_seconds: int = Field(default=3600, ge=0)
    reconnect_min_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus /metrics of the ingest process; 0: off."
    )
    rate_window_seconds: float = Field(
        default=60.0, gt=0, description="Smoothing of the rate of change (°C/min)."
    )
    cook_idle_seconds: float = Field(
        default=1800.0, gt=0, description="A cook with no data this long is closed."
    )
    retention_days: int = Field(default=365, ge=0, description="0 keeps readings forever.")
    purge_batch: int = Field(default=10000, ge=1)
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    provisioning: ProvisioningSettings = Field(default_factory=ProvisioningSettings)

    def accepts_unknown(self, settings: Settings) -> bool:
        if self.accept_unknown_devices is None:
            return settings.mode == "embedded"
        return self.accept_unknown_devices
