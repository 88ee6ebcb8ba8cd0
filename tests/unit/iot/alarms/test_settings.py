"""Alarm settings: defaults, the environment, and one clear line for a bad value."""

from __future__ import annotations

import pytest

from app.config import ConfigError
from app.iot.alarms.evaluate import AlarmConfig
from app.iot.alarms.settings import alarm_config, load_alarm_settings


def test_defaults_are_the_evaluators() -> None:
    assert alarm_config(load_alarm_settings()) == AlarmConfig()


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKEHOUSE_IOT_OFFLINE_SECONDS", "30")
    monkeypatch.setenv("SMOKEHOUSE_IOT_ALARM_HYSTERESIS_C", "2.5")
    config = alarm_config(load_alarm_settings())
    assert (config.offline_seconds, config.hysteresis_c) == (30.0, 2.5)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"offline_seconds": 0}, "SMOKEHOUSE_IOT_OFFLINE_SECONDS"),
        ({"alarm_hysteresis_c": -1}, "SMOKEHOUSE_IOT_ALARM_HYSTERESIS_C"),
        ({"stall_min_c": 80.0}, "SMOKEHOUSE_IOT_"),
    ],
)
def test_bad_values(overrides: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        load_alarm_settings(**overrides)
