"""Import every domain's models so Alembic and tests see the whole schema."""

from app.bus.models import (
    ApiDestination,
    Archive,
    ArchivedEvent,
    Connection,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    Event,
    EventBus,
    Replay,
    Rule,
    Target,
)
from app.iot.alarms.models import Alarm, AlarmEvaluatorState
from app.iot.models import (
    Cook,
    Device,
    IngestDeadLetter,
    IngestedMessage,
    Probe,
    Reading,
)
from app.leases.models import LeaseRow
from app.queues.models import QueueMessage, SqsDeduplication, SqsMoveTask, SqsQueue
from app.runners.models import Runner, RunnerJob, RunnerJobEvent, WebhookReceipt
from app.scaling.models import ScalingDecision, ScalingQueue, ScalingWorker
from app.schedules.models import Schedule, ScheduleGroup
from app.secrets.models import Secret
from app.system.models import Ping
from app.tagging import ResourceTags
from app.workflows.activities.models import Activity, ActivityTask
from app.workflows.map_runs.models import MapRun, MapRunChild
from app.workflows.models import (
    Execution,
    ExecutionEvent,
    ExecutionTask,
    StateMachine,
    StateMachineDefinition,
)

__all__ = [
    "Activity",
    "ActivityTask",
    "Alarm",
    "AlarmEvaluatorState",
    "ApiDestination",
    "Archive",
    "ArchivedEvent",
    "Connection",
    "Cook",
    "DeadLetter",
    "Delivery",
    "DeliveryAttempt",
    "Device",
    "Event",
    "EventBus",
    "Execution",
    "ExecutionEvent",
    "ExecutionTask",
    "IngestDeadLetter",
    "IngestedMessage",
    "LeaseRow",
    "MapRun",
    "MapRunChild",
    "Ping",
    "Probe",
    "QueueMessage",
    "Reading",
    "Replay",
    "ResourceTags",
    "Rule",
    "Runner",
    "RunnerJob",
    "RunnerJobEvent",
    "ScalingDecision",
    "ScalingQueue",
    "ScalingWorker",
    "Schedule",
    "ScheduleGroup",
    "Secret",
    "SqsDeduplication",
    "SqsMoveTask",
    "SqsQueue",
    "StateMachine",
    "StateMachineDefinition",
    "Target",
    "WebhookReceipt",
]
