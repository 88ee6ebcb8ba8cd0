"""Ingest's Prometheus metrics and its rate-limited refusal log.

A flood of bad messages (a broken device sending 10 a second) must not flood the log: each kind
of refusal is logged the first time and then at most once per interval, with how many were
suppressed in between. Every refusal is still counted and dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("smokehouse.iot.ingest")

REJECTED = Counter(
    "smokehouse_iot_rejected_total", "MQTT messages ingest refused, by kind", ["kind"]
)
MESSAGES = Counter(
    "smokehouse_iot_messages_total",
    "MQTT messages ingest handled, by outcome (accepted, duplicate, rejected, status)",
    ["outcome"],
)
STORE_FAILING_SECONDS = Gauge(
    "smokehouse_iot_store_failing_seconds",
    "How long ingest has been unable to store a batch (0 when the last write committed); "
    "`smokehouse health ingest` fails past 30 s",
)
BATCH_SECONDS = Histogram(
    "smokehouse_iot_batch_seconds",
    "Time to write one ingest batch (validate, dedupe, put on the bus, commit)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class RateLimitedLog:
    """Log a refusal kind at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def refused(self, kind: str, topic: str, reason: str) -> bool:
        """Log it (and return True) unless this kind was logged within the interval."""
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False
            suppressed = self._suppressed.pop(kind, 0)
            self._last[kind] = now
        log.warning(
            "refused a message (%s) on %s: %s%s",
            kind,
            topic,
            reason,
            f" ({suppressed} more of this kind since the last report)" if suppressed else "",
        )
        return True
