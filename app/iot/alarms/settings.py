"""Alarm settings (``SMOKEHOUSE_IOT_*``, beside the ingest ones in :mod:`app.iot.settings`)."""

from __future__ import annotations

from functools import cache

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config import ConfigError
from app.iot.alarms.evaluate import AlarmConfig

PREFIX = "SMOKEHOUSE_IOT_"


class AlarmSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", extra="ignore", frozen=True
    )

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

    @model_validator(mode="after")
    def _band(self) -> AlarmSettings:
        if self.stall_min_c >= self.stall_max_c:
            raise ValueError("stall_min_c must be below stall_max_c")
        return self

    def config(self) -> AlarmConfig:
        return AlarmConfig(
            hysteresis_c=self.alarm_hysteresis_c,
            offline_seconds=self.offline_seconds,
            stall_min_c=self.stall_min_c,
            stall_max_c=self.stall_max_c,
            stall_minutes=self.stall_minutes,
            stall_rate_c_per_min=self.stall_rate_c_per_min,
            probe_ok_seconds=self.probe_ok_seconds,
        )


def load_alarm_settings(**overrides: object) -> AlarmSettings:
    try:
        return AlarmSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        raise ConfigError(PREFIX + field.upper(), str(error["msg"])) from None


@cache
def alarm_settings() -> AlarmSettings:
    """The process's alarm settings, read once."""
    return load_alarm_settings()
