"""A rule's targets: PutTargets, ListTargetsByRule, RemoveTargets.

A bad target is a failed entry (the good ones still apply), as on AWS: the model only checks each
target's shape, the service decides whether smokehouse can deliver to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.aws.operations import AwsCall
from app.bus import service
from app.bus.api.common import Answer, Params, operation, paging, slice_page


def _failed(entries: Sequence[service.FailedTarget]) -> Answer:
    return {
        "FailedEntryCount": len(entries),
        "FailedEntries": [
            {"TargetId": f.target_id, "ErrorCode": f.code, "ErrorMessage": f.message}
            for f in entries
        ],
    }


@operation("PutTargets", write=True)
def put_targets_op(params: Params, call: AwsCall) -> Answer:
    """Add or replace targets by Id."""
    with call.session() as session:
        failed = service.put_targets(
            session, params.get("EventBusName"), params["Rule"], params["Targets"]
        )
    return _failed(failed)


@operation("ListTargetsByRule", write=False)
def list_targets_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        rule = service.get_rule(session, params.get("EventBusName"), params["Rule"])
        items, next_token = slice_page(rule.targets, *paging(params))
        answer: Answer = {"Targets": [dict(target.spec) for target in items]}
    if next_token is not None:
        answer["NextToken"] = next_token
    return answer


@operation("RemoveTargets", write=True)
def remove_targets_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        failed = service.remove_targets(
            session, params.get("EventBusName"), params["Rule"], params["Ids"]
        )
    return _failed(failed)
