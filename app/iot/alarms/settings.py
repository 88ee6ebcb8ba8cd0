"""Alarm settings: ``settings.iot.alarms`` (:class:`app.config.iot.AlarmSettings`), and the
evaluator's :class:`AlarmConfig` made from them."""

from __future__ import annotations

from app.config import load_section
from app.config.iot import AlarmSettings
from app.iot.alarms.evaluate import AlarmConfig

__all__ = ["AlarmSettings", "alarm_config", "load_alarm_settings"]


def alarm_config(alarms: AlarmSettings) -> AlarmConfig:
    return AlarmConfig(
        hysteresis_c=alarms.alarm_hysteresis_c,
        offline_seconds=alarms.offline_seconds,
        stall_min_c=alarms.stall_min_c,
        stall_max_c=alarms.stall_max_c,
        stall_minutes=alarms.stall_minutes,
        stall_rate_c_per_min=alarms.stall_rate_c_per_min,
        probe_ok_seconds=alarms.probe_ok_seconds,
    )


def load_alarm_settings(**overrides: object) -> AlarmSettings:
    return load_section(AlarmSettings, **overrides)
