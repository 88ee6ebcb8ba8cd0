"""Thermometer settings (``SMOKEHOUSE_IOT_*``), kept beside the domain that reads them.

Like ``app.config.Settings``, a bad value stops the process with one line naming the setting.
"""

from __future__ import annotations

from functools import cache

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config import ConfigError, Settings

PREFIX = "SMOKEHOUSE_IOT_"


class IotSettings(BaseSettings):
    """Ingest, enrichment, cooks and retention."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", extra="ignore", frozen=True
    )

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

    def accepts_unknown(self, settings: Settings) -> bool:
        if self.accept_unknown_devices is None:
            return settings.mode == "embedded"
        return self.accept_unknown_devices


def load_iot_settings(**overrides: object) -> IotSettings:
    try:
        return IotSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        raise ConfigError(PREFIX + field.upper(), str(error["msg"])) from None


@cache
def iot_settings() -> IotSettings:
    """The process's settings, read once (handlers and tasks have no other way to get them)."""
    return load_iot_settings()
