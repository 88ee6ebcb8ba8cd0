"""Scaling tasks: the autoscaler's periodic pass."""

from __future__ import annotations

from workers.celery_app import celery_app, settings_of


@celery_app.task(name="scaling.autoscale", ignore_result=True)
def autoscale() -> int:
    """One autoscaler pass (the scheduler sends this on an interval); returns queues passed.

    Skipped with the ``process`` backend: local workers must be children of the long-lived
    ``smokehouse scaling run`` loop, not of whichever worker ran this task."""
    from app.scaling.autoscaler import Autoscaler

    settings = settings_of(celery_app)
    if settings.scaling.backend == "process":
        return 0
    return len(Autoscaler.from_settings(settings).run_once())
