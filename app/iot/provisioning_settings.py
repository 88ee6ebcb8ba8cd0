"""Device provisioning settings (``SMOKEHOUSE_IOT_*``): where Mosquitto's auth files live.

They share ingest's ``SMOKEHOUSE_IOT_`` prefix (its settings ignore these names and these ignore
its) and, like every setting, a bad value stops the command with one line naming it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config import ConfigError, Settings

PREFIX = "SMOKEHOUSE_IOT_"


class ProvisioningSettings(BaseSettings):
    """Mosquitto password/ACL files, how to make Mosquitto reload them, what devices are told."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", extra="ignore", frozen=True
    )

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
        default="0640",
        pattern=r"^0?[0-7]{3}$",
        description="Octal mode of both files (Mosquitto's user must be able to read them).",
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


def load_provisioning_settings(**overrides: object) -> ProvisioningSettings:
    try:
        return ProvisioningSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        raise ConfigError(PREFIX + field.upper(), str(error["msg"])) from None
