"""This worker process (``SMOKEHOUSE_WORKER_*``): its pool size and the identity a backend gave it.

A scaling backend that starts a worker sets ``SMOKEHOUSE_WORKER_ID`` (and ``_BACKEND``,
``_BACKEND_REF``) so the registry links the process to what started it; a worker started by hand
leaves them unset and makes up its own id.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from app.config.section import section_config

PREFIX = "SMOKEHOUSE_WORKER_"


class WorkerSettings(BaseSettings):
    model_config = section_config(PREFIX)

    concurrency: int = Field(default=2, ge=1, le=64, description="Celery pool size.")
    id: str | None = Field(default=None, description="Set by the backend that started it.")
    backend: str = Field(default="", description="Which backend started it (unset: by hand).")
    backend_ref: str | None = Field(default=None, description="The backend's pid/container/pod.")

    @field_validator("id", "backend_ref")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None
