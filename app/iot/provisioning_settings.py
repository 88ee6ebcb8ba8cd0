"""Device provisioning settings: ``settings.iot.provisioning``
(:class:`app.config.iot.ProvisioningSettings`): where Mosquitto's auth files live."""

from __future__ import annotations

from app.config import load_section
from app.config.iot import ProvisioningSettings

__all__ = ["ProvisioningSettings", "load_provisioning_settings"]


def load_provisioning_settings(**overrides: object) -> ProvisioningSettings:
    return load_section(ProvisioningSettings, **overrides)
