"""Replays: StartReplay, DescribeReplay, ListReplays, CancelReplay."""

from __future__ import annotations

import logging

from app.aws.operations import AwsCall
from app.bus import archives, outbox
from app.bus.api.common import Answer, Params, clean, operation, page, paging, scope, timestamp
from app.bus.arns import Scope
from app.bus.models import Replay
from app.config import Settings
from app.db import after_commit, get_database

log = logging.getLogger("smokehouse.bus")


def _summary(scope: Scope, replay: Replay) -> Answer:
    return {
        "ReplayName": replay.name,
        "EventSourceArn": scope.archive_arn(replay.archive_name),
        "State": replay.state,
        "StateReason": replay.state_reason,
        "EventStartTime": replay.event_start_time,
        "EventEndTime": replay.event_end_time,
        "EventLastReplayedTime": replay.last_replayed_time,
        "ReplayStartTime": replay.replay_start_time,
        "ReplayEndTime": replay.replay_end_time,
    }


def _start_runner(settings: Settings, name: str, answer: Answer) -> None:
    """After-commit work that handles its own failure: a runner that cannot be started leaves
    the replay ``FAILED`` with the reason (not ``STARTING`` forever), and the caller's answer --
    built inside the unit of work, returned after this ran -- says so too."""
    try:
        outbox.start_replay(settings, name)
    except Exception as exc:
        log.exception("could not start the runner of replay %s", name)
        reason = f"The replay could not be started: {type(exc).__name__}: {exc}"
        with get_database(settings.sqlalchemy_url).session() as session:
            archives.fail_replay(session, name, reason)
        answer.update(State="FAILED", StateReason=reason[:512])


@operation("StartReplay", write=True)
def start_replay_op(params: Params, call: AwsCall) -> Answer:
    """Create the replay (``STARTING``), commit, then start its runner."""
    where = scope(call)
    destination = params["Destination"]
    with call.session() as session:
        replay = archives.start_replay(
            session,
            where,
            name=params["ReplayName"],
            event_source_arn=params["EventSourceArn"],
            destination_arn=destination["Arn"],
            filter_arns=destination.get("FilterArns"),
            start=timestamp(params, "EventStartTime"),
            end=timestamp(params, "EventEndTime"),
            description=params.get("Description"),
        )
        answer: Answer = {
            "ReplayArn": where.replay_arn(replay.name),
            "State": replay.state,
            "ReplayStartTime": replay.replay_start_time,
        }
        after_commit(session).call(_start_runner, call.require_settings(), replay.name, answer)
    return answer


@operation("DescribeReplay", write=False)
def describe_replay_op(params: Params, call: AwsCall) -> Answer:
    where = scope(call)
    with call.session() as session:
        replay = archives.get_replay(session, params["ReplayName"])
        return clean(
            {
                **_summary(where, replay),
                "ReplayArn": where.replay_arn(replay.name),
                "Description": replay.description,
                "Destination": clean(
                    {
                        "Arn": where.bus_arn(replay.destination_bus),
                        "FilterArns": replay.filter_rules or None,
                    }
                ),
            }
        )


@operation("ListReplays", write=False)
def list_replays_op(params: Params, call: AwsCall) -> Answer:
    where = scope(call)
    limit, token = paging(params)
    with call.session() as session:
        found = archives.list_replays(
            session,
            where,
            name_prefix=params.get("NamePrefix"),
            event_source_arn=params.get("EventSourceArn"),
            state=params.get("State"),
            limit=limit,
            token=token,
        )
        return page(found, "Replays", lambda r: clean(_summary(where, r)))


@operation("CancelReplay", write=True)
def cancel_replay_op(params: Params, call: AwsCall) -> Answer:
    """``CANCELLING`` now; the runner stops at its next batch and records ``CANCELLED``."""
    with call.session() as session:
        replay = archives.cancel_replay(session, params["ReplayName"])
        return clean(
            {
                "ReplayArn": scope(call).replay_arn(replay.name),
                "State": replay.state,
                "StateReason": replay.state_reason,
            }
        )
