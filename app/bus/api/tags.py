"""Tags on buses and rules: TagResource, UntagResource, ListTagsForResource, and the ``Tags``
that CreateEventBus and PutRule accept (kept, and read back as given).

Tags are stored under the resource's ARN without its region (``events:rule/r``): buses and rules
are not partitioned by region, so a client signing for another region sees the same tags.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from app import tagging
from app.aws.operations import AwsCall
from app.bus import service
from app.bus.api.common import Answer, Params, operation
from app.bus.arns import resource_of
from app.bus.errors import LimitExceeded, ResourceNotFound, Validation


def bus_key(name: str) -> str:
    return f"events:event-bus/{name}"


def rule_key(bus: str, name: str) -> str:
    return f"events:rule/{name}" if bus == "default" else f"events:rule/{bus}/{name}"


def _key(session: Session, arn: str) -> str:
    """The stored key of the bus or rule ``arn`` names; ResourceNotFound if it names none."""
    try:
        service_name, resource = resource_of(arn)
    except ValueError:
        raise Validation(f"Parameter ResourceARN is not valid: {arn}") from None
    kind, _, path = resource.partition("/")
    if service_name != "events" or kind not in ("event-bus", "rule") or not path:
        raise Validation(f"Tagging is supported on event buses and rules, not {arn}.")
    if kind == "event-bus":
        return bus_key(service.get_bus(session, path).name)
    bus, _, name = path.rpartition("/")
    rule = service.get_rule(session, bus or None, name)
    return rule_key(rule.bus_name, rule.name)


def set_tags(session: Session, key: str, tags: Iterable[dict[str, Any]] | None) -> None:
    """Store ``[{"Key", "Value"}]`` on ``key`` (EventBridge's answers for a bad tag)."""
    given = {str(t["Key"]): str(t.get("Value", "")) for t in tags or ()}
    if not given:
        return
    try:
        tagging.tag(session, key, given)
    except tagging.TagError as error:
        raise (LimitExceeded if error.too_many else Validation)(error.message) from None


@operation("TagResource", write=True)
def tag_resource_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        set_tags(session, _key(session, params["ResourceARN"]), params["Tags"])
    return {}


@operation("UntagResource", write=True)
def untag_resource_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        tagging.untag(session, _key(session, params["ResourceARN"]), params["TagKeys"])
    return {}


@operation("ListTagsForResource", write=False)
def list_tags_for_resource_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        tags = tagging.tags_of(session, _key(session, params["ResourceARN"]))
    return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}


__all__ = ["ResourceNotFound", "bus_key", "rule_key", "set_tags"]
