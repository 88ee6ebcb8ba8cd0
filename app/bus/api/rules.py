"""Rules: PutRule, DescribeRule, ListRules, DeleteRule, EnableRule, DisableRule."""

from __future__ import annotations

from app import tagging
from app.aws.operations import AwsCall
from app.bus import service
from app.bus.api.common import Answer, Params, clean, operation, page, paging, scope
from app.bus.api.tags import rule_key, set_tags
from app.bus.arns import Scope, bus_name_from
from app.bus.models import Rule


def render(scope: Scope, rule: Rule, *, describe: bool = False) -> Answer:
    return clean(
        {
            "Name": rule.name,
            "Arn": service.rule_arn(scope, rule),
            "EventPattern": rule.event_pattern,
            "ScheduleExpression": rule.schedule_expression,
            "State": rule.state,
            "Description": rule.description,
            "RoleArn": rule.role_arn,
            "ManagedBy": rule.managed_by,
            "EventBusName": rule.bus_name,
            "CreatedBy": scope.account_id if describe else None,
        }
    )


@operation("PutRule", write=True)
def put_rule_op(params: Params, call: AwsCall) -> Answer:
    """Create or update a rule; a bad pattern is refused and nothing is stored. ``Tags`` are
    added to the rule's tags."""
    with call.session() as session:
        rule = service.put_rule(
            session,
            name=params["Name"],
            bus_name=params.get("EventBusName"),
            event_pattern=params.get("EventPattern"),
            schedule_expression=params.get("ScheduleExpression"),
            state=params.get("State"),
            description=params.get("Description"),
            role_arn=params.get("RoleArn"),
            region=call.region,
        )
        set_tags(session, rule_key(rule.bus_name, rule.name), params.get("Tags"))
        return {"RuleArn": service.rule_arn(scope(call), rule)}


@operation("DescribeRule", write=False)
def describe_rule_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        rule = service.get_rule(session, params.get("EventBusName"), params["Name"])
        return render(scope(call), rule, describe=True)


@operation("ListRules", write=False)
def list_rules_op(params: Params, call: AwsCall) -> Answer:
    where = scope(call)
    with call.session() as session:
        found = service.list_rules(
            session, params.get("EventBusName"), params.get("NamePrefix"), *paging(params)
        )
        return page(found, "Rules", lambda rule: render(where, rule))


@operation("DeleteRule", write=True)
def delete_rule_op(params: Params, call: AwsCall) -> Answer:
    """Deleting a rule that does not exist succeeds, as on AWS; one with targets needs Force."""
    with call.session() as session:
        service.delete_rule(
            session, params.get("EventBusName"), params["Name"], force=bool(params.get("Force"))
        )
        bus = bus_name_from(params.get("EventBusName"))
        tagging.forget(session, [rule_key(bus, params["Name"])])
    return {}


def _set_state(params: Params, call: AwsCall, state: str) -> Answer:
    with call.session() as session:
        service.set_rule_state(session, params.get("EventBusName"), params["Name"], state)
    return {}


@operation("EnableRule", write=True)
def enable_rule_op(params: Params, call: AwsCall) -> Answer:
    return _set_state(params, call, "ENABLED")


@operation("DisableRule", write=True)
def disable_rule_op(params: Params, call: AwsCall) -> Answer:
    return _set_state(params, call, "DISABLED")
