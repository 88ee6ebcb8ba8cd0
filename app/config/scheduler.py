"""The periodic scheduler (``SMOKEHOUSE_SCHEDULER_*``): how long its singleton leases last.

Any number of ``smokehouse scheduler`` processes may run; the one holding the ``scheduler``
lease sends the periodic tasks, and each periodic task runs under a lease of its own. A dead
holder's lease lapses after ``lease_seconds``; a standby checks every fifth of it, so the next
one takes over within 1.2 leases.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from app.config.section import section_config

PREFIX = "SMOKEHOUSE_SCHEDULER_"


class SchedulerSettings(BaseSettings):
    model_config = section_config(PREFIX)

    misfire_grace_seconds: float = Field(
        default=60.0,
        ge=0.0,
        le=86_400.0,
        description="A scheduled rule's tick or a recurring schedule's fire later than this "
        "(a scheduler outage) is skipped, not fired: no backfill, as AWS.",
    )
    lease_seconds: float = Field(
        default=6.0,
        ge=1.0,
        le=600.0,
        description="A singleton's lease lasts this long unless renewed (every third of it).",
    )
