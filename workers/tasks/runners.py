"""Runner tasks: the reconcile loop's pass and the warm pool's (the scheduler sends both)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from workers.celery_app import settings_of


@shared_task(name="runners.reconcile", bind=True, ignore_result=True)
def reconcile(self: Any) -> dict[str, Any]:
    """One reconcile pass over EC2, the container engine and the jobs; returns its report."""
    from dataclasses import asdict

    from app.runners.handlers import current_profiles
    from app.runners.pool import needed
    from app.runners.reconcile import reconcile as reconcile_once

    settings = settings_of(self.app)
    profiles = current_profiles(settings)
    report = reconcile_once(settings, settings.runners, profiles)
    # The warm pool's periodic pass (schedules, idle_time, refills after failed launches) rides
    # on reconcile's minute instead of a beat entry of its own, and only when there is a pool:
    # an instance without one runs no extra task.
    if needed(settings, profiles):
        self.app.send_task("runners.pool")
    return asdict(report)


@shared_task(name="runners.pool", bind=True, ignore_result=True)
def pool(self: Any) -> dict[str, Any]:
    """One warm-pool pass: refill each profile's idle runners, stop the surplus. Sent after each
    reconcile pass, right after a job took an idle runner, and when a pool runner stopped; a
    singleton under its lease."""
    from dataclasses import asdict

    from app.runners.handlers import current_profiles
    from app.runners.pool import maintain

    settings = settings_of(self.app)
    return asdict(maintain(settings, current_profiles(settings)))
