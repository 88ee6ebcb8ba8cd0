"""Home Assistant MQTT discovery for devices that opted in (``home_assistant_discovery``).

Contract (ingest's enrich step calls it; the provisioning work implements it):
``announce(settings, session, device_id, probe_ids)`` publishes retained discovery configs for
newly seen probes of a device that opted in, and does nothing otherwise. Never raises into the
caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.config import Settings


def announce(
    settings: Settings, session: Session, device_id: str, probe_ids: Sequence[str]
) -> None:
    """Placeholder until provisioning lands: announces nothing."""
