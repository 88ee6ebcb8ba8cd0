"""The runners' Prometheus metrics (``/metrics``; every worker's together in multiprocess mode).

Observed once per job: the queue time when a job's ``running`` status first reaches its timeline
(a redelivered hook adds nothing), an assignment when a warm runner is bound to a job, an
interruption when the first ``interrupted`` mark is made.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from app.runners.pool_policy import QUEUE_BUCKETS

QUEUE_SECONDS = Histogram(
    "smokehouse_runner_queue_seconds",
    "GitLab job queue time: pending hook → running hook, by runner profile",
    ["profile"],
    buckets=QUEUE_BUCKETS,
)
ASSIGNED = Counter(
    "smokehouse_runner_assigned_total",
    "Pending jobs bound to a runner, by profile and how (warm: from the pool; cold: launched)",
    ["profile", "how"],
)
INTERRUPTIONS = Counter(
    "smokehouse_runner_spot_interruptions_total",
    "Spot instances EC2 took back while they had a job",
)
