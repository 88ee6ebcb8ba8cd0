"""Event buses: CreateEventBus, DescribeEventBus, ListEventBuses, DeleteEventBus."""

from __future__ import annotations

from app import tagging
from app.aws.operations import AwsCall
from app.bus import service
from app.bus.api.common import Answer, Params, clean, operation, page, paging, scope
from app.bus.api.tags import bus_key, rule_key, set_tags
from app.bus.arns import Scope
from app.bus.errors import Validation
from app.bus.models import EventBus


def render(scope: Scope, bus: EventBus) -> Answer:
    return clean(
        {
            "Name": bus.name,
            "Arn": scope.bus_arn(bus.name),
            "Description": bus.description,
            "CreationTime": bus.created_at,
            "LastModifiedTime": bus.created_at,
        }
    )


@operation("CreateEventBus", write=True)
def create_event_bus_op(params: Params, call: AwsCall) -> Answer:
    """KMS keys, dead-letter and log configuration are accepted and not kept; tags are kept."""
    if params.get("EventSourceName") is not None:
        raise Validation("Partner event sources (EventSourceName) are not supported by smokehouse.")
    description = params.get("Description")
    with call.session() as session:
        bus = service.create_bus(session, params["Name"], description)
        set_tags(session, bus_key(bus.name), params.get("Tags"))
        return clean({"EventBusArn": scope(call).bus_arn(bus.name), "Description": description})


@operation("DescribeEventBus", write=False)
def describe_event_bus_op(params: Params, call: AwsCall) -> Answer:
    """``Name`` may be a name or an ARN; without it, the default bus."""
    with call.session() as session:
        return render(scope(call), service.get_bus(session, params.get("Name")))


@operation("ListEventBuses", write=False)
def list_event_buses_op(params: Params, call: AwsCall) -> Answer:
    where = scope(call)
    with call.session() as session:
        found = service.list_buses(session, params.get("NamePrefix"), *paging(params))
        return page(found, "EventBuses", lambda bus: render(where, bus))


@operation("DeleteEventBus", write=True)
def delete_event_bus_op(params: Params, call: AwsCall) -> Answer:
    """Deletes the bus with its rules, targets and archives; a missing bus is not an error."""
    with call.session() as session:
        service.delete_bus(session, params["Name"])
        tagging.forget(session, [bus_key(params["Name"])])
        tagging.forget_prefix(session, rule_key(params["Name"], ""))  # its rules' tags
    return {}
