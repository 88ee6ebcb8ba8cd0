"""Where domains plug into each other's registries: imported once by every entry point.

Domains that must not know each other meet through registries (DESIGN.md, "Rules of the house"):
the bus delivers to state machines and SQS queues through its target registry, Step Functions
sends to SQS queues through its resource registry, workflows resolve task tokens
held by work-queue messages through their token registry, and the leading scheduler runs the
autoscaler's wake-up check through its tick hooks, and the autoscaler reads SQS queue depths
through its depth sources; Step Functions activity tasks wake their long polls through the live
transport, which the workflows may not import. Importing this module fills all three. Every
process that serves requests or runs tasks imports it first -- ``create_app``, the Celery worker
app and the ``smokehouse`` command -- so no process can miss a registration because it happened
not to import some module.
"""

from __future__ import annotations

from app import realtime
from app.broker.tick_hooks import register_tick_hook
from app.bus.scheduled import ScheduledRules
from app.bus.targets import register_adapter
from app.queues.messages import MessageTokens
from app.queues.sqs.integrations import SEND_MESSAGE, SqsSendMessageResource, SqsTarget
from app.queues.sqs.service import depth as sqs_queue_depth
from app.scaling.sources import register_sqs_depth
from app.scaling.wake import WakeCheck
from app.schedules.firer import ScheduleFirer
from app.workflows.activities import wake as activity_wake
from app.workflows.activities.resource import SUPPORTED as ACTIVITY
from app.workflows.activities.resource import ActivityResource
from app.workflows.bus_target import StateMachineTarget
from app.workflows.resources import register_resource
from app.workflows.tokens import register_token_holder

_installed = False


def install() -> None:
    """Register every cross-domain plug-in (idempotent)."""
    global _installed
    if _installed:
        return
    register_adapter(StateMachineTarget())
    register_adapter(SqsTarget())
    register_resource(SqsSendMessageResource(), SEND_MESSAGE)
    register_resource(ActivityResource(), ACTIVITY)
    activity_wake.register(realtime.publish, realtime.listen)
    register_token_holder(MessageTokens())
    register_tick_hook(WakeCheck)
    register_sqs_depth(sqs_queue_depth)
    register_tick_hook(ScheduledRules)
    register_tick_hook(ScheduleFirer)
    _installed = True


install()
