"""The Celery queues every worker knows, in a module light enough for ``smokehouse run``'s
supervisor to import without loading Celery."""

from __future__ import annotations

QUEUES = ("default", "bus", "workflows", "iot", "runners", "scaling")
