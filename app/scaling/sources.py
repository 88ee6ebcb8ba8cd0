"""Depth sources besides the Celery broker: a worker pool can be sized from an SQS queue.

``app.scaling`` must not know ``app.queues`` (DESIGN.md): the SQS domain registers its depth
function here from ``app/wiring.py``. Setting ``SMOKEHOUSE_SCALING_SQS_QUEUES=pool=queue,...``
makes the autoscaler read the pool's depth from the SQS queue -- visible messages are the
backlog, in-flight ones (received, not yet deleted) are being worked -- instead of the broker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from app.config.scaling import ScalingSettings
from app.db import Database
from app.scaling.depth import QueueDepth

SqsDepth = Callable[[Session, str], tuple[int, int]]

_sqs_depth: SqsDepth | None = None


class NoSqsDepth(RuntimeError):
    """A pool is sized from an SQS queue but no SQS depth function was registered."""


def register_sqs_depth(function: SqsDepth) -> None:
    """Install the SQS domain's ``depth(session, queue_name) -> (visible, in_flight)``."""
    global _sqs_depth
    _sqs_depth = function


def sqs_depth(session: Session, pool: str, queue_name: str) -> QueueDepth:
    """The pool's depth read from SQS queue ``queue_name`` (zero if the queue does not exist)."""
    if _sqs_depth is None:
        raise NoSqsDepth("no SQS depth function registered (import app.wiring)")
    visible, in_flight = _sqs_depth(session, queue_name)
    return QueueDepth(pool, ready=visible, unacked=in_flight)


def pool_depths(
    probe: Callable[[str, Sequence[str]], dict[str, QueueDepth]],
    broker_url: str,
    database: Database,
    scaling: ScalingSettings,
    queues: Sequence[str],
) -> dict[str, QueueDepth]:
    """Each pool's depth: from its SQS queue when ``sqs_queues`` names one, else the broker."""
    sqs = scaling.sqs_queue_map
    broker = [q for q in queues if q not in sqs]
    depths = probe(broker_url, broker) if broker else {}
    from_sqs = [q for q in queues if q in sqs]
    if from_sqs:
        with database.session() as session:
            for pool in from_sqs:
                depths[pool] = sqs_depth(session, pool, sqs[pool])
    return depths
