"""Thermometer alarms: a pure evaluator, their tables, the service the ``iot-alarms`` state
machine calls, and Apprise notifications (``ALARMS.md`` in this folder says how they fit)."""
