"""The worker registry on SQLite and PostgreSQL: register, heartbeat, liveness, reaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.db import get_database
from app.scaling import registry
from app.scaling.models import ScalingWorker
from app.scaling.registry import Heartbeat, HeldMessage, WorkerInfo

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
LIVENESS = timedelta(seconds=30)


def info(worker_id: str = "w1", queues: tuple[str, ...] = ("default",)) -> WorkerInfo:
    return WorkerInfo(id=worker_id, queues=queues, concurrency=2, hostname="h", pid=42)


def test_register_heartbeat_and_liveness(database_url: str) -> None:
    database = get_database(database_url)
    with database.session() as session:
        registry.register(session, info("w1"), T0)
        registry.register(session, info("w2", ("bus",)), T0)
    held = [HeldMessage("tag-1", "default", "task-1")]
    with database.session() as session:
        beat = Heartbeat("busy", "t[1]", 1, held, 3, 1.5)
        registry.heartbeat(session, info("w1"), beat, T0 + timedelta(seconds=10))
    with database.session() as session:
        live = registry.live_workers(session, T0 + timedelta(seconds=25), LIVENESS)
        assert [w.id for w in live] == ["w1", "w2"]
        assert [w.id for w in registry.live_workers(session, T0, LIVENESS, "bus")] == ["w2"]
        w1 = session.get(ScalingWorker, "w1")
        assert w1 is not None
        assert (w1.state, w1.current_task, w1.tasks_done, w1.busy_seconds) == (
            "busy",
            "t[1]",
            3,
            1.5,
        )
        assert registry.held_messages(w1) == held


def test_silent_worker_is_reaped_with_what_it_held(database_url: str) -> None:
    database = get_database(database_url)
    held = [HeldMessage("tag-1", "default", "task-1"), HeldMessage("tag-2", "default", "task-2")]
    with database.session() as session:
        registry.register(session, info("quiet"), T0)
        registry.heartbeat(session, info("quiet"), Heartbeat("busy", held=held), T0)
        registry.register(session, info("chatty"), T0)
        registry.heartbeat(session, info("chatty"), Heartbeat("idle"), T0 + timedelta(seconds=20))
    with database.session() as session:
        assert registry.reap(session, T0 + timedelta(seconds=29), LIVENESS) == []
    with database.session() as session:
        dead = registry.reap(session, T0 + timedelta(seconds=31), LIVENESS)
        assert [w.id for w in dead] == ["quiet"]
    with database.session() as session:
        assert [w.id for w in registry.unrestored(session)] == ["quiet"]
        now = T0 + timedelta(seconds=31)
        assert [w.id for w in registry.live_workers(session, now, LIVENESS)] == ["chatty"]


def test_a_reaped_worker_that_beats_again_comes_back(database_url: str) -> None:
    database = get_database(database_url)
    with database.session() as session:
        registry.register(session, info("w"), T0)
    with database.session() as session:
        registry.reap(session, T0 + timedelta(minutes=5), LIVENESS)
    with database.session() as session:
        registry.heartbeat(session, info("w"), Heartbeat("idle"), T0 + timedelta(minutes=6))
    with database.session() as session:
        worker = session.get(ScalingWorker, "w")
        assert worker is not None
        assert worker.state == "idle"
        assert worker.stopped_at is None


def test_stopped_worker_is_not_live_and_is_purged(database_url: str) -> None:
    database = get_database(database_url)
    with database.session() as session:
        registry.register(session, info("w"), T0)
    with database.session() as session:
        registry.mark_stopped(session, "w", T0 + timedelta(seconds=1))
    with database.session() as session:
        assert registry.live_workers(session, T0 + timedelta(seconds=2), LIVENESS) == []
        assert registry.reap(session, T0 + timedelta(hours=1), LIVENESS) == []
        assert registry.purge_stopped(session, T0 + timedelta(days=1)) == 1


def test_preregistered_worker_keeps_backend_ref_when_it_registers(database_url: str) -> None:
    database = get_database(database_url)
    with database.session() as session:
        registry.preregister(
            session,
            "p1",
            queues=["default"],
            concurrency=2,
            backend="process",
            backend_ref="1234",
            now=T0,
        )
    with database.session() as session:
        assert [w.state for w in registry.live_workers(session, T0, LIVENESS)] == ["starting"]
        registry.register(session, info("p1"), T0 + timedelta(seconds=2))
    with database.session() as session:
        worker = session.get(ScalingWorker, "p1")
        assert worker is not None
        assert (worker.backend, worker.backend_ref, worker.pid) == ("process", "1234", 42)
