"""Does the broker speak MQTT 5? Mosquitto does; the embedded amqtt broker speaks only 3.1.1.

The probe lives in :mod:`app.mqtt` (the bus's MQTT target asks the same question); ingest
imports it from here.
"""

from __future__ import annotations

from app.mqtt import V311_REFUSAL, speaks_v5

__all__ = ["V311_REFUSAL", "speaks_v5"]
