"""Thermometer settings: ``settings.iot`` (:class:`app.config.iot.IotSettings`,
``SMOKEHOUSE_IOT_*``).

Domain code reads the section from the Settings it is given; ``load_iot_settings`` builds the
section alone (tests, tools).
"""

from __future__ import annotations

from app.config import load_section
from app.config.iot import IOT_PREFIX as PREFIX
from app.config.iot import IotSettings

__all__ = ["PREFIX", "IotSettings", "load_iot_settings"]


def load_iot_settings(**overrides: object) -> IotSettings:
    return load_section(IotSettings, **overrides)
