"""PutEvents entries → EventBridge envelopes, with EventBridge's per-entry errors and limits.

Pure: the caller supplies ids and the clock. A bad entry gets an ``ErrorCode``/``ErrorMessage``
and changes nothing; the good entries in the same request still go through (as on AWS).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class EntryError:
    code: str
    message: str


def entry_size(entry: Mapping[str, Any]) -> int:
    """EventBridge's PutEvents entry size: UTF-8 bytes of Source, DetailType, Detail, Resources
    (+14 bytes when Time is given)."""
    size = 14 if entry.get("Time") is not None else 0
    for field in ("Source", "DetailType", "Detail"):
        value = entry.get(field)
        if isinstance(value, str):
            size += len(value.encode())
    for resource in entry.get("Resources") or []:
        if isinstance(resource, str):
            size += len(resource.encode())
    return size


def _time(value: Any, now: datetime) -> datetime:
    if value is None:
        return now
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_envelope(
    entry: Mapping[str, Any],
    *,
    event_id: Callable[[], str],
    now: datetime,
    account: str,
    region: str,
) -> dict[str, Any] | EntryError:
    """One entry → the event envelope EventBridge delivers, or the entry's error."""
    for field in ("Source", "DetailType", "Detail"):
        value = entry.get(field)
        if value is None or value == "":
            return EntryError(
                "InvalidArgument",
                f"Parameter {field} is not valid. Reason: {field} is a required argument.",
            )
        if not isinstance(value, str):
            return EntryError("InvalidArgument", f"Parameter {field} is not valid.")
    try:
        detail = json.loads(entry["Detail"])
    except ValueError:
        return EntryError("MalformedDetail", "Detail is malformed.")
    if not isinstance(detail, dict):
        return EntryError("MalformedDetail", "Detail is malformed.")
    resources = entry.get("Resources") or []
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        return EntryError("InvalidArgument", "Parameter Resources is not valid.")
    try:
        time = _time(entry.get("Time"), now)
    except (ValueError, OverflowError, OSError):
        return EntryError("InvalidArgument", "Parameter Time is not valid.")
    return {
        "version": "0",
        "id": event_id(),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": account,
        "time": format_time(time),
        "region": region,
        "resources": resources,
        "detail": detail,
    }
