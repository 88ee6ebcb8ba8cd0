"""``arn:aws:events:<region>:<account>:event-bus/<name>``: forward the event to another bus.

The forwarded event keeps ``source``, ``detail-type``, ``detail``, ``resources`` and ``time`` and
is routed on the receiving bus like any PutEvents entry (its rules, its archives). Its id is
derived from the delivery id, so a retried attempt — the first one may have committed and then
died before reporting success — finds the event already stored and adds nothing: forwarding is
idempotent, not merely at-least-once.

Loops are refused the way EventBridge refuses them: "EventBridge can't route events received
from a sender event bus to a third event bus" (user guide, bus-to-bus), so an event that was
itself forwarded is not forwarded again, and a rule can't target its own bus. Forwarded ids are
recognisable: they are name-based (SHA-1, like uuid5) with the UUID version nibble set to 8
("custom", RFC 9562), distinct from PutEvents' random v4 and replays' v5 ids.

With ``Input``, ``InputPath`` or ``InputTransformer`` the rendered input (a JSON object) becomes
the forwarded event's ``detail`` — smokehouse's choice; AWS does not document it for this target.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.bus.arns import DEFAULT_BUS
from app.bus.envelope import EntryError, build_envelope
from app.bus.events import route
from app.bus.models import Event, EventBus
from app.bus.outbox import DELIVER_TASK
from app.bus.targets.base import DeliveryContext, TargetFailure
from app.db import after_commit, utcnow

BUS_ARN = re.compile(r"^arn:aws:events:[a-z0-9-]*:\d{12}:event-bus/([/.\-_A-Za-z0-9]{1,256})$")
RULE_ARN = re.compile(r"^arn:aws:events:[^:]*:\d{12}:rule/(?:(.+)/)?([^/]+)$")
FORWARD_NAMESPACE = uuid.UUID("0b4f3d5e-2f59-4a8e-9d7c-6a1e6f0c2b17")
_VERSION_MASK = 0xF << 76


def bus_name_of(arn: str) -> str | None:
    match = BUS_ARN.match(arn)
    return match.group(1) if match else None


def source_bus_of(rule_arn: str) -> str | None:
    """``…:rule/<rule>`` is on the default bus, ``…:rule/<bus>/<rule>`` on ``<bus>``."""
    match = RULE_ARN.match(rule_arn)
    if match is None:
        return None
    return match.group(1) or DEFAULT_BUS


def forwarded_event_id(delivery_id: str) -> str:
    """The id a delivery's forwarded event gets: the same for every attempt of that delivery."""
    digest = uuid.uuid5(FORWARD_NAMESPACE, delivery_id).int
    return str(uuid.UUID(int=(digest & ~_VERSION_MASK) | (8 << 76)))


def is_forwarded(event_id: str) -> bool:
    try:
        return uuid.UUID(event_id).version == 8
    except ValueError:
        return False


def _uses_input(spec: dict[str, Any]) -> bool:
    return any(spec.get(k) is not None for k in ("Input", "InputPath", "InputTransformer"))


class EventBusTarget:
    kind = "event-bus"

    def accepts(self, arn: str) -> bool:
        return arn.startswith("arn:aws:events:") and ":event-bus/" in arn

    def validate(self, session: Session, spec: dict[str, Any]) -> str | None:
        name = bus_name_of(spec["Arn"])
        if name is None:
            return f"Target ARN {spec['Arn']} is not a valid event bus ARN."
        if session.get(EventBus, name) is None:
            return f"Event bus {name} does not exist."
        return None

    def deliver(self, context: DeliveryContext, payload: str) -> int | None:
        name = bus_name_of(context.spec["Arn"])
        if name is None:
            raise TargetFailure(
                f"not an event bus ARN: {context.spec['Arn']}", retryable=False, code="BadArn"
            )
        if source_bus_of(context.rule_arn) == name:
            raise TargetFailure(
                f"rule {context.rule_arn} targets its own bus {name}: that would loop",
                retryable=False,
                code="EventBusLoop",
            )
        event = context.event
        if is_forwarded(str(event.get("id", ""))):
            raise TargetFailure(
                "EventBridge can't route events received from a sender event bus to a third "
                "event bus",
                retryable=False,
                code="EventBusLoop",
            )
        detail = event.get("detail", {})
        if _uses_input(context.spec):
            try:
                detail = json.loads(payload)
            except ValueError:
                detail = None
            if not isinstance(detail, dict):
                raise TargetFailure(
                    "the rendered input must be a JSON object to become the forwarded detail",
                    retryable=False,
                    code="MalformedDetail",
                )
        event_id = forwarded_event_id(context.delivery_id)
        entry = {
            "Source": event.get("source"),
            "DetailType": event.get("detail-type"),
            "Detail": json.dumps(detail),
            "Resources": event.get("resources") or [],
            "Time": event.get("time"),
        }
        try:
            with context.database.session() as session:
                if session.get(Event, event_id) is not None:
                    return None  # an earlier attempt forwarded it; its deliveries are in the outbox
                bus = session.get(EventBus, name)
                if bus is None:
                    raise TargetFailure(
                        f"Event bus {name} does not exist.", retryable=False, code="NotFound"
                    )
                now = utcnow()
                envelope = build_envelope(
                    entry,
                    event_id=lambda: event_id,
                    now=now,
                    account=context.settings.account_id,
                    region=context.settings.region,
                )
                if isinstance(envelope, EntryError):
                    raise TargetFailure(envelope.message, retryable=False, code=envelope.code)
                delivery_ids = route(
                    session, bus, envelope, now=now, new_id=lambda: str(uuid.uuid4())
                )
                after_commit(session).batch(DELIVER_TASK, context.enqueue_deliveries, delivery_ids)
        except IntegrityError as exc:
            with context.database.session() as session:
                if session.get(Event, event_id) is not None:
                    return None  # a concurrent attempt stored the same event first: done
            raise TargetFailure(
                f"could not store the forwarded event: {exc.orig}", retryable=True, code="Conflict"
            ) from exc
        return None
