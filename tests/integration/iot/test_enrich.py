"""Enrich-and-store on both databases: probes created with sane defaults, calibration, rate of
change, cook sessions opened and closed, idempotent on redelivery, retention purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.config import load_settings
from app.db import get_database
from app.iot import cooks, readings
from app.iot.enrich import InvalidTelemetry, parse_messages, store_batch
from app.iot.handlers import enrich_and_store
from app.iot.models import Cook, IngestedMessage, Probe, Reading
from app.iot.settings import load_iot_settings
from tests.integration.iot.conftest import add_device, rfc3339

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
IOT = load_iot_settings(cook_idle_seconds=1800, rate_window_seconds=60)


def message(seq: int, at: datetime, device: str = "bbq1", **temps: float | None) -> dict[str, Any]:
    probes = [
        {"id": pid, "temp_c": t, "status": "ok" if t is not None else "open"}
        for pid, t in (temps or {"pit": 110.0, "meat1": 40.0}).items()
    ]
    return {
        "device_id": device,
        "seq": seq,
        "ts": rfc3339(at),
        "received_at": rfc3339(at + timedelta(milliseconds=20)),
        "probes": probes,
    }


def store(database_url: str, messages: list[dict[str, Any]]) -> Any:
    parsed, skipped = parse_messages({"messages": messages})
    assert skipped == 0
    with get_database(database_url).session() as session:
        return store_batch(session, IOT, parsed)


def probes(database_url: str, device: str = "bbq1") -> dict[str, Probe]:
    with get_database(database_url).session() as session:
        found = session.scalars(select(Probe).where(Probe.device_id == device))
        return {p.probe_id: p for p in found}


def rows(database_url: str) -> list[Reading]:
    with get_database(database_url).session() as session:
        return list(session.scalars(select(Reading).order_by(Reading.seq, Reading.probe_id)))


def all_cooks(database_url: str) -> list[Cook]:
    with get_database(database_url).session() as session:
        return list(session.scalars(select(Cook).order_by(Cook.started_at)))


def test_probes_are_created_with_default_names_and_roles(database_url: str) -> None:
    add_device(database_url, "bbq1")
    result = store(database_url, [message(1, T0, pit=110.0, meat1=40.0, meat2=None, ambient=20.0)])
    assert result.new_probes == {"bbq1": ["pit", "meat1", "meat2", "ambient"]}
    found = probes(database_url)
    assert {pid: (p.name, p.role) for pid, p in found.items()} == {
        "pit": ("Pit", "pit"),
        "meat1": ("Probe 1", "food"),
        "meat2": ("Probe 2", "food"),
        "ambient": ("Ambient", "ambient"),
    }
    assert found["meat2"].last_status == "open"
    assert found["meat2"].last_temp_c is None
    # Seen again: nothing new.
    assert store(database_url, [message(2, T0 + timedelta(seconds=5))]).new_probes == {}


def test_calibration_offset_and_rate_of_change(database_url: str) -> None:
    add_device(database_url, "bbq1")
    store(database_url, [message(1, T0, meat1=40.0)])
    with get_database(database_url).session() as session:
        probe = session.scalar(select(Probe).where(Probe.probe_id == "meat1"))
        assert probe is not None
        probe.calibration_offset_c = -1.5
    # 1 °C/min for ten minutes, one reading a minute.
    store(
        database_url,
        [message(n, T0 + timedelta(minutes=n - 1), meat1=40.0 + (n - 1)) for n in range(2, 12)],
    )
    stored = {r.seq: r for r in rows(database_url)}
    assert stored[1].temp_c == 40.0
    assert stored[1].rate_c_per_min is None
    assert stored[11].raw_temp_c == 50.0
    assert stored[11].temp_c == 48.5
    # The first calibrated reading jumps by -1.5 + 1; the smoothing then settles near 1 °C/min.
    assert stored[11].rate_c_per_min == pytest.approx(1.0, abs=0.05)
    meat = probes(database_url)["meat1"]
    assert meat.last_temp_c == 48.5
    assert meat.last_rate_c_per_min == stored[11].rate_c_per_min
    assert meat.last_ts == T0 + timedelta(minutes=10)


def test_a_redelivered_batch_changes_nothing(database_url: str) -> None:
    add_device(database_url, "bbq1")
    batch = [message(n, T0 + timedelta(seconds=n), meat1=40.0 + n / 10) for n in range(1, 51)]
    store(database_url, batch)
    before = [
        (r.seq, r.probe_id, r.temp_c, r.rate_c_per_min, r.cook_id) for r in rows(database_url)
    ]
    probe_before = {
        k: (p.last_ts, p.last_temp_c, p.last_rate_c_per_min)
        for k, p in probes(database_url).items()
    }
    store(database_url, batch)
    store(database_url, batch[10:20])
    after = [(r.seq, r.probe_id, r.temp_c, r.rate_c_per_min, r.cook_id) for r in rows(database_url)]
    assert after == before
    assert len(after) == 50
    assert {
        k: (p.last_ts, p.last_temp_c, p.last_rate_c_per_min)
        for k, p in probes(database_url).items()
    } == probe_before
    assert len(all_cooks(database_url)) == 1


def test_a_late_reading_is_stored_but_does_not_overwrite_the_latest(database_url: str) -> None:
    add_device(database_url, "bbq1")
    store(database_url, [message(5, T0 + timedelta(minutes=5), meat1=60.0)])
    store(database_url, [message(4, T0 + timedelta(minutes=4), meat1=55.0)])
    assert probes(database_url)["meat1"].last_temp_c == 60.0
    assert [r.seq for r in rows(database_url) if r.probe_id == "meat1"] == [4, 5]


def test_cooks_open_on_data_and_close_after_silence(database_url: str) -> None:
    add_device(database_url, "bbq1")
    first = [message(n, T0 + timedelta(minutes=n)) for n in range(10)]
    # 45 minutes of silence, then a second cook, all in one batch.
    second = [message(100 + n, T0 + timedelta(minutes=55 + n)) for n in range(5)]
    store(database_url, first + second)
    found = all_cooks(database_url)
    assert len(found) == 2
    assert found[0].started_at == T0
    assert found[0].ended_at == T0 + timedelta(minutes=9)
    assert found[0].ended_by == "auto"
    assert found[1].ended_at is None
    stored = rows(database_url)
    assert {r.cook_id for r in stored if r.seq < 100} == {found[0].id}
    assert {r.cook_id for r in stored if r.seq >= 100} == {found[1].id}
    # The scheduler's check closes the open one after 30 minutes of silence, at its last reading.
    with get_database(database_url).session() as session:
        assert cooks.close_idle(session, T0 + timedelta(minutes=70), timedelta(minutes=30)) == 0
        assert cooks.close_idle(session, T0 + timedelta(minutes=100), timedelta(minutes=30)) == 1
    closed = all_cooks(database_url)[1]
    assert closed.ended_at == T0 + timedelta(minutes=59)
    assert closed.ended_by == "auto"
    # A late reading from inside the first cook lands in it.
    store(database_url, [message(50, T0 + timedelta(minutes=5, seconds=30))])
    assert next(r.cook_id for r in rows(database_url) if r.seq == 50) == found[0].id


def test_a_cook_is_the_same_whatever_order_its_batches_are_stored_in(database_url: str) -> None:
    """Deliveries run in any order (batches, several workers): a batch of earlier readings
    stored after a later one still belongs to the cook the data opened, which began with it;
    a reading from before the idle gap does not."""
    add_device(database_url, "bbq1")
    store(database_url, [message(n, T0 + timedelta(minutes=n)) for n in range(10, 20)])
    store(database_url, [message(n, T0 + timedelta(minutes=n)) for n in range(10)])
    [cook] = all_cooks(database_url)
    assert cook.started_at == T0
    assert {r.cook_id for r in rows(database_url)} == {cook.id}
    store(database_url, [message(99, T0 - timedelta(minutes=45))])  # 45 min before: not this cook
    assert next(r.cook_id for r in rows(database_url) if r.seq == 99) is None
    assert all_cooks(database_url)[0].started_at == T0


def test_cooks_started_and_ended_by_hand(database_url: str) -> None:
    add_device(database_url, "bbq1")
    store(database_url, [message(1, T0)])
    with get_database(database_url).session() as session:
        cook = cooks.start_cook(session, "bbq1", T0 + timedelta(minutes=1), name="Brisket")
        manual_id = cook.id
    assert [c.ended_by for c in all_cooks(database_url)] == ["manual", None]
    store(database_url, [message(2, T0 + timedelta(minutes=2))])
    assert rows(database_url)[-1].cook_id == manual_id
    with get_database(database_url).session() as session:
        ended = cooks.end_cook(session, "bbq1", T0 + timedelta(minutes=3))
        assert ended is not None
        assert ended.id == manual_id
        assert cooks.end_cook(session, "bbq1", T0 + timedelta(minutes=3)) is None
    store(database_url, [message(3, T0 + timedelta(minutes=4))])
    assert len(all_cooks(database_url)) == 3  # data after the end starts a new cook


def test_bad_workflow_input_is_refused_or_skipped(database_url: str) -> None:
    with pytest.raises(InvalidTelemetry):
        parse_messages({"nothing": 1})
    parsed, skipped = parse_messages({"messages": [{"device_id": "x"}, message(1, T0)]})
    assert skipped == 1
    assert len(parsed) == 1


def test_the_handler_stores_and_publishes_after_commit(
    database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import realtime

    published: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(realtime, "publish_many", lambda s, items: published.extend(items))
    add_device(database_url, "bbq1")
    settings = load_settings(database_url=database_url, data_dir=tmp_path)
    result = enrich_and_store(
        settings, IOT, {"messages": [message(1, T0), message(2, T0 + timedelta(seconds=1))]}
    )
    assert result.rows == 4
    # the readings, then the device's first probes (the grill view opens on them)
    assert [c for c, _ in published] == ["readings:bbq1", "readings:bbq1", "devices"]
    assert published[2][1] == {"device_id": "bbq1", "probe_ids": ["pit", "meat1"]}
    live = published[0][1]
    assert set(live) == {"device_id", "seq", "ts", "cook_id", "probes"}
    assert live["cook_id"] is not None
    assert live["ts"].endswith("Z")
    assert live["probes"][0] == {
        "probe_id": "pit",
        "temp_c": 110.0,
        "status": "ok",
        "rate_c_per_min": None,
    }
    published.clear()  # known probes: readings only
    enrich_and_store(settings, IOT, {"messages": [message(3, T0 + timedelta(seconds=2))]})
    assert [c for c, _ in published] == ["readings:bbq1"]


def test_retention_purges_old_readings_in_batches(database_url: str) -> None:
    add_device(database_url, "bbq1")
    old = T0 - timedelta(days=400)
    store(database_url, [message(n, old + timedelta(seconds=n)) for n in range(1, 8)])
    store(database_url, [message(100, T0)])
    with get_database(database_url).session() as session:
        session.add(IngestedMessage(device_id="bbq1", seq=1, received_at=old))
    with get_database(database_url).session() as session:
        first = readings.purge_batch(session, T0, retention_days=365, batch=10)
    assert first["readings"] == 10
    assert first["ingested_messages"] == 1
    with get_database(database_url).session() as session:
        second = readings.purge_batch(session, T0, retention_days=365, batch=10)
        assert second["readings"] == 4
        assert readings.purge_batch(session, T0, retention_days=0, batch=10)["readings"] == 0
        assert session.scalar(select(func.count()).select_from(Reading)) == 2


def test_the_scheduled_tasks_close_idle_cooks_and_purge(database_url: str, tmp_path: Any) -> None:
    """The beat tasks themselves, run by a Celery app configured like a worker's."""
    import workers.tasks.iot  # noqa: F401  (a worker imports it at start)
    from workers.celery_app import create_celery

    add_device(database_url, "bbq1")
    now = datetime.now(UTC)
    store(
        database_url, [message(1, now - timedelta(hours=2)), message(2, now - timedelta(days=400))]
    )
    settings = load_settings(database_url=database_url, data_dir=tmp_path)
    celery = create_celery(settings)
    assert celery.tasks["iot.close_idle_cooks"].apply().get() == 1
    assert all(c.ended_by == "auto" for c in all_cooks(database_url))
    purged = celery.tasks["iot.purge"].apply().get()
    assert purged["readings"] == 2  # the reading from 400 days ago, both probes
    assert [r.seq for r in rows(database_url)] == [1, 1]
