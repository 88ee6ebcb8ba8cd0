"""EventBridge Scheduler's operations on the REST-JSON router (:mod:`app.aws.rest`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.aws.operations import AwsCall, Handler
from app.aws.rest import rest_registry
from app.schedules import service
from app.schedules.models import Schedule, ScheduleGroup

PREFIX = "Scheduler"
Params = dict[str, Any]


def op(name: str, *, write: bool) -> Callable[[Handler], Handler]:
    return rest_registry.operation(PREFIX, name, write=write)


def _group(call: AwsCall, group: ScheduleGroup) -> dict[str, Any]:
    return {
        "Arn": service.group_arn(call.region, call.account_id, group.name),
        "Name": group.name,
        "State": "ACTIVE",
        "CreationDate": group.created_at,
        "LastModificationDate": group.updated_at,
    }


def _schedule(call: AwsCall, s: Schedule, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Arn": service.schedule_arn(call.region, call.account_id, s.group_name, s.name),
        "Name": s.name,
        "GroupName": s.group_name,
        "State": s.state,
        "CreationDate": s.created_at,
        "LastModificationDate": s.updated_at,
    }
    if not full:
        out["Target"] = {"Arn": s.target["Arn"]}
        return out
    out.update(
        {
            "ScheduleExpression": s.expression,
            "ScheduleExpressionTimezone": s.timezone,
            "FlexibleTimeWindow": s.flexible_window,
            "ActionAfterCompletion": s.action_after_completion,
            "Target": s.target,
        }
    )
    for key, value in (
        ("StartDate", s.start_date),
        ("EndDate", s.end_date),
        ("Description", s.description),
        ("KmsKeyArn", s.kms_key_arn),
    ):
        if value is not None:
            out[key] = value
    return out


def _page(items: list[Any], params: Params) -> tuple[list[Any], str | None]:
    start = (
        int(params.get("NextToken") or 0) if str(params.get("NextToken") or "0").isdigit() else 0
    )
    size = int(params.get("MaxResults") or 100)
    page = items[start : start + size]
    return page, str(start + size) if start + size < len(items) else None


@op("CreateSchedule", write=True)
def create_schedule(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        s = service.create_schedule(session, params, call.region)
        return {
            "ScheduleArn": service.schedule_arn(call.region, call.account_id, s.group_name, s.name)
        }


@op("UpdateSchedule", write=True)
def update_schedule(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        s = service.update_schedule(session, params, call.region)
        return {
            "ScheduleArn": service.schedule_arn(call.region, call.account_id, s.group_name, s.name)
        }


@op("GetSchedule", write=False)
def get_schedule(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        s = service.get_schedule(session, params.get("GroupName"), params["Name"])
        return _schedule(call, s, full=True)


@op("DeleteSchedule", write=True)
def delete_schedule(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        service.delete_schedule(session, params.get("GroupName"), params["Name"])
    return {}


@op("ListSchedules", write=False)
def list_schedules(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        found = service.list_schedules(
            session, params.get("GroupName"), params.get("NamePrefix"), params.get("State")
        )
        page, token = _page(found, params)
        out: dict[str, Any] = {"Schedules": [_schedule(call, s, full=False) for s in page]}
    if token:
        out["NextToken"] = token
    return out


@op("CreateScheduleGroup", write=True)
def create_schedule_group(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        group = service.create_group(
            session, params["Name"], params.get("Tags"), params.get("ClientToken")
        )
        return {"ScheduleGroupArn": service.group_arn(call.region, call.account_id, group.name)}


@op("GetScheduleGroup", write=False)
def get_schedule_group(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        return _group(call, service.get_group(session, params["Name"]))


@op("DeleteScheduleGroup", write=True)
def delete_schedule_group(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        service.delete_group(session, params["Name"])
    return {}


@op("ListScheduleGroups", write=False)
def list_schedule_groups(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        page, token = _page(service.list_groups(session, params.get("NamePrefix")), params)
        out: dict[str, Any] = {"ScheduleGroups": [_group(call, g) for g in page]}
    if token:
        out["NextToken"] = token
    return out


@op("TagResource", write=True)
def tag_resource(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        group = service.group_from_arn(session, params["ResourceArn"])
        group.tags = {**group.tags, **{t["Key"]: t["Value"] for t in params["Tags"]}}
    return {}


@op("UntagResource", write=True)
def untag_resource(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        group = service.group_from_arn(session, params["ResourceArn"])
        group.tags = {k: v for k, v in group.tags.items() if k not in set(params["TagKeys"])}
    return {}


@op("ListTagsForResource", write=False)
def list_tags_for_resource(params: Params, call: AwsCall) -> dict[str, Any]:
    with call.session() as session:
        group = service.group_from_arn(session, params["ResourceArn"])
        return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(group.tags.items())]}
