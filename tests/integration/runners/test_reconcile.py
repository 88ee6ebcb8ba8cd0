"""The reconcile task is scheduled, and harmless where runners are not configured: no profiles
and no runners means no EC2 or container engine is even asked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.broker.celery import SINGLETON_TASKS
from app.config import Settings
from app.runners.profiles import Profiles
from app.runners.reconcile import ReconcileReport, reconcile
from app.runners.settings import load_runners_settings
from workers.celery_app import celery_app, celery_config

pytestmark = pytest.mark.integration


def test_reconcile_is_a_scheduled_task(settings_factory: Callable[..., Settings]) -> None:
    schedule = celery_config(settings_factory())["beat_schedule"]
    assert schedule["runners-reconcile"]["task"] == "runners.reconcile"
    celery_app.loader.import_default_modules()  # what a worker does at start
    assert "runners.reconcile" in celery_app.tasks
    # the warm pool's pass rides on reconcile (and on demand): no beat entry of its own, so an
    # instance without runner profiles starts no runners worker for it; one pass at a time
    assert "runners.pool" in celery_app.tasks
    assert all(entry["task"] != "runners.pool" for entry in schedule.values())
    assert "runners.pool" in SINGLETON_TASKS


def test_nothing_configured_means_nothing_to_do(
    settings_factory: Callable[..., Settings], database_url: str
) -> None:
    settings = settings_factory(database_url=database_url)
    report = reconcile(settings, load_runners_settings(), Profiles())
    assert report == ReconcileReport()


def test_an_unreachable_ec2_is_reported_not_raised(
    settings_factory: Callable[..., Settings], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    profiles = Profiles.model_validate(
        {"profiles": {"a": {"kind": "ec2", "image_id": "ami-1", "instance_types": ["t3.small"]}}}
    )
    settings = settings_factory(database_url=database_url)
    report = reconcile(settings, load_runners_settings(), profiles)
    assert len(report.errors) == 1
    assert report.errors[0].startswith("ec2: ")
