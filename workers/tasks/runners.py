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
    from app.runners.reconcile import reconcile as reconcile_once

    settings = settings_of(self.app)
    report = reconcile_once(settings, settings.runners, current_profiles(settings))
    return asdict(report)


@shared_task(name="runners.pool", bind=True, ignore_result=True)
def pool(self: Any) -> dict[str, Any]:
    """One warm-pool pass: refill each profile's idle runners, stop the surplus."""
    from dataclasses import asdict

    from app.runners.handlers import current_profiles
    from app.runners.pool import maintain

    settings = settings_of(self.app)
    return asdict(maintain(settings, current_profiles(settings)))
