"""ARNs the way EventBridge writes them, and the target ARNs smokehouse adds."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BUS = "default"


@dataclass(frozen=True, slots=True)
class Scope:
    region: str
    account_id: str

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def bus_arn(self, bus: str) -> str:
        return self.arn("events", f"event-bus/{bus}")

    def rule_arn(self, bus: str, rule: str) -> str:
        return self.arn("events", f"rule/{rule}" if bus == DEFAULT_BUS else f"rule/{bus}/{rule}")

    def archive_arn(self, name: str) -> str:
        return self.arn("events", f"archive/{name}")

    def replay_arn(self, name: str) -> str:
        return self.arn("events", f"replay/{name}")

    def connection_arn(self, name: str, uuid: str) -> str:
        return self.arn("events", f"connection/{name}/{uuid}")

    def api_destination_arn(self, name: str, uuid: str) -> str:
        return self.arn("events", f"api-destination/{name}/{uuid}")


def bus_name_from(name_or_arn: str | None) -> str:
    """``EventBusName`` accepts a name or an ARN."""
    if not name_or_arn:
        return DEFAULT_BUS
    if name_or_arn.startswith("arn:"):
        return name_or_arn.rsplit("event-bus/", 1)[-1]
    return name_or_arn


def resource_of(arn: str) -> tuple[str, str]:
    """``arn:aws:events:r:a:api-destination/x/id`` → ("events", "api-destination/x/id")."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn}")
    return parts[2], parts[5]
