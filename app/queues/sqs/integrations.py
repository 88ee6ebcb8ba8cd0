"""SQS queues as what other domains send to, joined through their registries by
:mod:`app.wiring`: the bus's ``arn:aws:sqs:…`` rule target and Step Functions'
``arn:aws:states:::sqs:sendMessage`` (also ``.waitForTaskToken``).

**Rule target** (EventBridge's SQS target): the rendered input is the message body;
``SqsParameters.MessageGroupId`` names the group on a FIFO queue, which must have content-based
deduplication (as EventBridge requires). The message id is derived from the delivery id, so a
retried attempt after a send that committed stores nothing more: one message per delivery. A
missing queue or a message SQS refuses is a permanent failure (dead letter at once).

**Task resource**: ``Parameters`` are SendMessage's (``QueueUrl``, ``MessageBody`` -- an object
is sent as its JSON text, as Step Functions does -- ``MessageAttributes``, ``MessageGroupId``,
``MessageDeduplicationId``, ``DelaySeconds``). It is transactional: the message is stored in
the transaction that records the task's result, so it is sent exactly once; with
``.waitForTaskToken`` the body carries ``$$.Task.Token`` and the consumer answers with
``SendTaskSuccess``/``SendTaskFailure``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from sqlalchemy.orm import Session

from app import realtime
from app.bus.targets.base import DeliveryContext, TargetFailure
from app.db import after_commit
from app.queues.sqs.messages import AlreadySent
from app.queues.sqs.service import QueueError, queue_name, send_message, wake_channel
from app.workflows.asl import TaskError
from app.workflows.resources.base import TaskCall

QUEUE_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,80}(\.fifo)?$")
SEND_MESSAGE = "arn:aws:states:::sqs:sendMessage"
log = logging.getLogger("smokehouse.queues")
_DELIVERY_IDS = uuid.UUID("5f0b2a52-52a4-4c5e-9a0e-7d1b8f3c6a11")


class SqsTarget:
    """``arn:aws:sqs:<region>:<account>:<queue>`` in PutTargets."""

    kind = "sqs"

    def accepts(self, arn: str) -> bool:
        return arn.startswith("arn:aws:sqs:") or bool(QUEUE_ARN.match(arn))

    def validate(self, session: Session, spec: dict[str, Any]) -> str | None:
        arn = str(spec["Arn"])
        if not QUEUE_ARN.match(arn):
            return f"Parameter {arn} is not valid. Reason: Provided Arn is not in correct format."
        group = (spec.get("SqsParameters") or {}).get("MessageGroupId")
        if arn.endswith(".fifo") and not group:
            return "Parameter(s) SqsParameters must be specified for target: " + str(spec.get("Id"))
        if group and not arn.endswith(".fifo"):
            return "SqsParameters can only be specified for a FIFO queue target."
        return None

    def deliver(self, context: DeliveryContext, payload: str) -> int | None:
        arn = str(context.spec["Arn"])
        group = (context.spec.get("SqsParameters") or {}).get("MessageGroupId")
        settings = context.settings
        try:
            with context.database.session() as session:
                sent = send_message(
                    session,
                    arn,
                    payload,
                    account_id=arn.split(":")[4],
                    group_id=group,
                    message_id=str(uuid.uuid5(_DELIVERY_IDS, context.delivery_id)),
                )
                name = queue_name(arn, arn.split(":")[4])
                after_commit(session).call(realtime.publish, settings, wake_channel(name), {})
        except AlreadySent:
            return 200  # an earlier attempt of this delivery sent it
        except QueueError as error:
            raise TargetFailure(
                f"{error.code}: {error.message}", retryable=False, code=error.code
            ) from None
        log.info("delivery %s sent SQS message %s", context.delivery_id, sent["MessageId"])
        return 200


class SqsSendMessageResource:
    """``arn:aws:states:::sqs:sendMessage`` (and ``.waitForTaskToken``)."""

    kind = "sqs"
    transactional = True

    def accepts(self, base: str) -> bool:
        return base == SEND_MESSAGE

    def problem(self, base: str) -> str | None:
        return None

    def run(self, call: TaskCall) -> Any:
        assert call.session is not None, "sqs:sendMessage runs inside the step's transaction"
        params = call.parameters if isinstance(call.parameters, dict) else {}
        url, body = params.get("QueueUrl"), params.get("MessageBody")
        if not isinstance(url, str) or body is None:
            raise TaskError(
                "States.Runtime", "sqs:sendMessage needs the parameters QueueUrl and MessageBody"
            )
        if not isinstance(body, str):
            body = json.dumps(body, separators=(",", ":"))
        delay = params.get("DelaySeconds")
        account = call.settings.account_id
        try:
            sent = send_message(
                call.session,
                url,
                body,
                account_id=account,
                attributes=params.get("MessageAttributes"),
                group_id=params.get("MessageGroupId"),
                dedup_id=params.get("MessageDeduplicationId"),
                delay_seconds=None if delay is None else int(delay),
            )
        except QueueError as error:
            raise TaskError("SQS.AmazonSQSException", f"{error.code}: {error.message}") from None
        name = queue_name(url, account)
        after_commit(call.session).call(realtime.publish, call.settings, wake_channel(name), {})
        return {
            **sent,
            "SdkHttpMetadata": {"HttpStatusCode": 200},
            "SdkResponseMetadata": {"RequestId": call.invocation_id},
        }
