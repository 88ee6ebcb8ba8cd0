"""Work-queue messages (``SMOKEHOUSE_QUEUES_*``): how often one may be received before it is
dead-lettered, SQS's ``maxReceiveCount``.

A message is *received* each time a worker claims it: its first run, a redelivery after its
worker died (Celery puts a killed worker's message back), a restore by the autoscaler's reaper.
Past the cap it is not run again: its status becomes ``dead``, visible in GraphQL
(``queueMessages(status: "dead")``) and redrivable (``redriveQueueMessage``).
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from app.config.section import section_config

PREFIX = "SMOKEHOUSE_QUEUES_"


class QueuesSettings(BaseSettings):
    model_config = section_config(PREFIX)

    max_receive_count: int = Field(
        default=5, ge=1, le=1000, description="Receives before a message is dead-lettered."
    )
    max_receive_counts: str = Field(
        default="",
        description="Per-queue caps over the default, as queue=count pairs: 'gpu=2,default=10'.",
    )

    @field_validator("max_receive_counts")
    @classmethod
    def _pairs(cls, value: str) -> str:
        parse_caps(value)
        return value

    def receive_cap(self, queue: str) -> int:
        """The number of receives ``queue``'s messages get."""
        return parse_caps(self.max_receive_counts).get(queue, self.max_receive_count)


def parse_caps(text: str) -> dict[str, int]:
    caps: dict[str, int] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        queue, sep, count = pair.partition("=")
        if not sep or not queue.strip() or not count.strip().isdigit():
            raise ValueError(f"{pair!r} is not queue=count")
        value = int(count)
        if not 1 <= value <= 1000:
            raise ValueError(f"{pair!r}: a count is 1 to 1000")
        caps[queue.strip()] = value
    return caps
