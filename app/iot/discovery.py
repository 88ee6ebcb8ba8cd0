"""Home Assistant MQTT discovery for devices that opted in (``home_assistant_discovery``).

Contract (ingest's enrich step calls it; the provisioning work implements it):
``announce(settings, session, device_id, probe_ids)`` publishes retained discovery configs for
newly seen probes of a device that opted in, and does nothing otherwise. Never raises into the
caller.

Each probe becomes one HA temperature sensor, ``<prefix>/sensor/<device>_<probe>/config``
(retained, QoS 1), reading the device's own telemetry topic directly: HA needs nothing from the
server but the broker, and the device's retained ``online``/``offline`` status (its Last Will)
is the sensor's availability. The value template picks the probe out of the ``probes`` array;
an unplugged probe (``temp_c: null``) renders ``None``, which HA shows as *unknown*, and a
message without the probe renders nothing, which HA ignores. Removing a device publishes empty
retained payloads, which is how HA deletes discovered entities.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import app
from app.config import Settings
from app.iot.models import Device, Probe
from app.iot.provisioning_settings import ProvisioningSettings

log = logging.getLogger("smokehouse.iot.discovery")


class DiscoveryError(Exception):
    """The broker didn't take a discovery message (not reachable, no PUBACK in time)."""


def object_id(device_id: str, probe_id: str) -> str:
    """HA's ``object_id`` allows ``[A-Za-z0-9_-]`` only (device ids may also contain '.')."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{device_id}_{probe_id}")


def config_topic(device_id: str, probe_id: str, prefix: str = "homeassistant") -> str:
    return f"{prefix}/sensor/{object_id(device_id, probe_id)}/config"


def value_template(probe_id: str) -> str:
    return (
        f"{{% for p in value_json.probes if p.id == {json.dumps(probe_id)} %}}"
        "{{ p.temp_c }}{% endfor %}"
    )


def sensor_config(
    device_id: str, device_name: str, probe_id: str, probe_name: str | None = None
) -> dict[str, Any]:
    return {
        "name": probe_name or probe_id,
        "unique_id": f"smokehouse_{object_id(device_id, probe_id)}",
        "object_id": object_id(device_id, probe_id),
        "device_class": "temperature",
        "state_class": "measurement",
        "unit_of_measurement": "°C",
        "suggested_display_precision": 1,
        "state_topic": f"smokehouse/{device_id}/telemetry",
        "value_template": value_template(probe_id),
        "availability_topic": f"smokehouse/{device_id}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [f"smokehouse_{device_id}"],
            "name": device_name,
            "manufacturer": "smokehouse",
            "model": "BBQ thermometer",
        },
        "origin": {"name": "smokehouse", "sw_version": app.__version__},
    }


def discovery_messages(
    device_id: str,
    device_name: str,
    probes: Sequence[tuple[str, str | None]],
    prefix: str = "homeassistant",
) -> list[tuple[str, bytes]]:
    """(topic, payload) per probe, given (probe_id, probe name or None)."""
    return [
        (
            config_topic(device_id, probe_id, prefix),
            json.dumps(
                sensor_config(device_id, device_name, probe_id, name), ensure_ascii=False
            ).encode(),
        )
        for probe_id, name in probes
    ]


def publish(settings: Settings, messages: Sequence[tuple[str, bytes]], timeout: float) -> None:
    """Retained, QoS 1, with the server's MQTT user; each waits for its PUBACK."""
    if not messages:
        return
    from app.bus.targets.base import TargetFailure
    from app.bus.targets.mqtt import publisher_for

    try:
        publisher = publisher_for(settings.effective_mqtt_url)
        for topic, payload in messages:
            publisher.publish(topic, payload, 1, True, timeout)
    except TargetFailure as exc:
        raise DiscoveryError(str(exc)) from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise DiscoveryError(f"MQTT: {exc}") from None


def _probes(session: Session, device_id: str, only: Sequence[str] | None) -> list[tuple[str, str]]:
    query = select(Probe.probe_id, Probe.name).where(Probe.device_id == device_id)
    if only is not None:
        query = query.where(Probe.probe_id.in_(list(only)))
    known: dict[str, str] = {row.probe_id: row.name for row in session.execute(query)}
    wanted = sorted(set(only) if only is not None else set(known))
    return [(probe_id, known.get(probe_id) or probe_id) for probe_id in wanted]


def announce_device(
    settings: Settings,
    session: Session,
    device_id: str,
    probe_ids: Sequence[str] | None = None,
    *,
    prov: ProvisioningSettings | None = None,
) -> int:
    """Publish the configs of ``probe_ids`` (default: every known probe) if the device opted in;
    how many were published. Raises :class:`DiscoveryError` if the broker didn't take them."""
    prov = prov or settings.iot.provisioning
    device = session.get(Device, device_id)
    if device is None or not device.home_assistant_discovery:
        return 0
    messages = discovery_messages(
        device.id, device.name, _probes(session, device.id, probe_ids), prov.discovery_prefix
    )
    publish(settings, messages, prov.discovery_timeout_seconds)
    return len(messages)


def withdraw(
    settings: Settings,
    device_id: str,
    probe_ids: Sequence[str],
    *,
    prov: ProvisioningSettings | None = None,
) -> int:
    """Empty retained payloads on the probes' config topics: HA deletes the entities and the
    broker forgets the retained configs. Raises :class:`DiscoveryError` like :func:`publish`."""
    prov = prov or settings.iot.provisioning
    messages = [(config_topic(device_id, p, prov.discovery_prefix), b"") for p in probe_ids]
    publish(settings, messages, prov.discovery_timeout_seconds)
    return len(messages)


def announce(
    settings: Settings, session: Session, device_id: str, probe_ids: Sequence[str]
) -> None:
    """Announce newly seen probes of a device that opted in; logs (never raises) a failure, so
    telemetry is stored whatever the broker does. ``smokehouse device home-assistant on`` (or a
    restart of HA, which keeps retained configs) covers a missed announcement."""
    try:
        announce_device(settings, session, device_id, list(probe_ids))
    except Exception as exc:  # the contract: never raise into ingest
        log.warning(
            "Home Assistant discovery failed",
            extra={"device_id": device_id, "probe_ids": list(probe_ids), "error": str(exc)},
        )
