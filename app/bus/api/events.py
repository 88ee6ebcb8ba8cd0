"""PutEvents and TestEventPattern."""

from __future__ import annotations

import json

from app.aws.operations import AwsCall
from app.bus.api.common import Answer, Params, operation, scope
from app.bus.errors import InvalidEventPatternError, Validation
from app.bus.events import put_events
from app.bus.patterns import InvalidEventPattern, test_event_pattern

#: TestEventPattern's Event must carry these (``resources`` is documented as required too, but
#: EventBridge accepts events without it: LocalStack records that against AWS).
EVENT_FIELDS = ("id", "account", "source", "time", "region", "detail-type")


@operation("PutEvents", write=True)
def put_events_op(params: Params, call: AwsCall) -> Answer:
    """Store, archive and route up to 10 entries; each bad entry gets its own error. The new
    deliveries are enqueued after the commit (a failed enqueue is the sweeper's to retry)."""
    with call.session() as session:
        result = put_events(
            session, params["Entries"], scope(call), settings=call.require_settings()
        )
    return result.response()


@operation("TestEventPattern", write=False)
def test_event_pattern_op(params: Params, call: AwsCall) -> Answer:
    """Whether ``Event`` matches ``EventPattern``, with EventBridge's pattern semantics."""
    try:
        event = json.loads(params["Event"])
    except ValueError:
        raise Validation("Parameter Event is not valid.") from None
    if not isinstance(event, dict) or any(field not in event for field in EVENT_FIELDS):
        raise Validation("Parameter Event is not valid.")
    try:
        return {"Result": test_event_pattern(params["EventPattern"], event)}
    except InvalidEventPattern as exc:
        raise InvalidEventPatternError(exc.message) from None
