"""Two real ``smokehouse scheduler`` processes (embedded mode): a scheduled rule's tick and a
Scheduler schedule's fire are put within 1 s of their due time, exactly once, and a tick that
falls due while the leader is killed (-9) is fired once by the standby -- neither skipped nor
doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app.bus import service
from app.bus.models import Event, Rule
from app.config import load_settings
from app.db import get_database
from app.schedules import service as schedules
from app.schedules.models import Schedule
from tests.integration.cli import cli_env, run_cli, smokehouse_argv

pytestmark = pytest.mark.integration

LEASE_SECONDS = 2.0


def wait_for(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def leads(log: Path) -> bool:
    return "this scheduler leads" in log.read_text(errors="replace")


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    settings: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "scheduler_lease_seconds": LEASE_SECONDS,
    }
    migrated = run_cli("migrate", cwd=tmp_path, **settings)
    assert migrated.returncode == 0, migrated.stderr
    return tmp_path, settings


def test_ticks_fire_on_time_once_across_a_leader_kill(
    home: tuple[Path, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path, values = home
    for name in list(os.environ):
        if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    database = get_database(load_settings(data_dir=values["data_dir"]).sqlalchemy_url)
    with database.session() as session:
        service.put_rule(session, name="tick", schedule_expression="rate(1 minute)")
        schedules.create_schedule(
            session,
            {
                "Name": "tock",
                "ScheduleExpression": "rate(1 minute)",
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "Target": {
                    "Arn": "arn:aws:events:us-east-1:000000000000:event-bus/default",
                    "RoleArn": "arn:aws:iam::000000000000:role/x",
                    "EventBridgeParameters": {"DetailType": "Tock", "Source": "test.tock"},
                },
            },
            "us-east-1",
        )

    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for name in ("a", "b"):
            log = tmp_path / f"scheduler-{name}.log"
            with log.open("wb") as out:
                processes.append(
                    (
                        subprocess.Popen(
                            smokehouse_argv("scheduler"),
                            cwd=tmp_path,
                            env=cli_env(**values),
                            stdout=out,
                            stderr=out,
                        ),
                        log,
                    )
                )
        wait_for(lambda: any(leads(log) for _, log in processes), timeout=30)

        def set_tick(seconds_from_now: float) -> datetime:
            tick = (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).replace(microsecond=0)
            with database.session() as session:
                session.execute(update(Rule).where(Rule.name == "tick").values(next_fire_at=tick))
                session.execute(
                    update(Schedule).where(Schedule.name == "tock").values(next_fire_at=tick)
                )
            return tick

        def fired(source: str = "aws.events") -> list[Event]:
            with database.session() as session:
                rows = list(session.scalars(select(Event).where(Event.source == source)).all())
                session.expunge_all()
                return rows

        first = set_tick(2)
        wait_for(lambda: len(fired()) == 1 and len(fired("test.tock")) == 1, timeout=10)
        for source in ("aws.events", "test.tock"):
            (event,) = fired(source)
            assert event.time == first
            late = (event.received_at - first).total_seconds()
            print(f"{source}: fired {late:.3f} s after its due time")
            assert 0 <= late <= 1.0, f"fired {late:.3f} s after its due time"

        leader, _ = next(p for p in processes if leads(p[1]))
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(10)
        second = set_tick(1)  # falls due while nobody leads
        wait_for(
            lambda: len(fired()) == 2 and len(fired("test.tock")) == 2, timeout=6 * LEASE_SECONDS
        )
        assert sorted(e.time for e in fired()) == [first, second]
        assert sorted(e.time for e in fired("test.tock")) == [first, second]
        with database.session() as session:
            assert session.scalar(select(Rule.next_fire_at).where(Rule.name == "tick")) > (
                datetime.now(UTC)
            )
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
