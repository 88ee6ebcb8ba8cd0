"""The device package's simulator → a real Mosquitto → ``smokehouse ingest`` → the bus → the
``iot-enrich-and-store`` Express workflow on a real Celery worker → rows in the database and live
updates on the ``readings:<device>`` channel. Both modes: PostgreSQL + Redis, SQLite + the
SQLite broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.iot.models import Cook, Device, Probe, Reading
from tests.integration.iot.conftest import add_device, collect_live, iot_stack, wait_rows
from tests.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLES = 150
PROBES = 3  # the simulator's pit, meat1, meat2


@pytest.mark.parametrize("mode", ["production", "embedded"])
def test_a_simulated_cook_is_stored_and_streamed(mode: str, tmp_path: Path) -> None:
    with iot_stack(mode, tmp_path) as stack:
        add_device(stack.settings.sqlalchemy_url, "smoker")
        stack.start_worker()
        stack.start_ingest()
        with collect_live(stack.settings, "readings:smoker") as live:
            done = stack.simulate("smoker", SAMPLES)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            count = select(func.count()).select_from(Reading)
            wait_rows(stack, count, SAMPLES * PROBES, timeout=60)
            wait_for(lambda: len(live) >= SAMPLES, 15, what="live updates")

        with stack.session() as session:
            seqs = session.execute(
                select(Reading.seq, func.count()).group_by(Reading.seq).order_by(Reading.seq)
            ).all()
            assert len(seqs) == SAMPLES
            assert {n for _, n in seqs} == {PROBES}
            roles = {p.probe_id: p.role for p in session.scalars(select(Probe))}
            assert roles == {"pit": "pit", "meat1": "food", "meat2": "food"}
            cooks = session.scalars(select(Cook)).all()
            assert len(cooks) == 1
            assert cooks[0].ended_at is None
            assert (
                session.scalar(
                    select(func.count()).select_from(Reading).where(Reading.cook_id == cooks[0].id)
                )
                == SAMPLES * PROBES
            )
            device = session.get(Device, "smoker")
            # The simulator said goodbye: its retained status is offline.
            assert device is not None
            assert device.availability == "offline"
            pit = session.scalar(select(Probe).where(Probe.probe_id == "pit"))
            assert pit is not None
            assert pit.last_temp_c is not None
            assert pit.last_ts is not None
        assert {m["device_id"] for m in live} == {"smoker"}
        assert len({m["seq"] for m in live}) == SAMPLES
