"""A cook opens the grill page before any thermometer exists, then switches the Pi on: the cards
and the live chart appear from the first reading, without a reload (its own stack: no device,
no reading before the page is open)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.iot.models import Reading
from tests.e2e.conftest import log_in
from tests.e2e.test_grill import ADMIN, KEYS, temp
from tests.integration.iot.conftest import (
    IotStack,
    TestPublisher,
    encode,
    iot_stack,
    telemetry,
    telemetry_topic,
)
from tests.integration.workflows.stack import _serve
from tests.services import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]

DEVICE = "e2e-first"


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[tuple[IotStack, str]]:
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        patch.chdir(tmp_path)
        # as in embedded mode: a thermometer that publishes becomes a device (no provisioning)
        with iot_stack(
            "production", tmp_path, access_keys=KEYS, iot_accept_unknown_devices=True
        ) as stack:
            stack.start_worker()
            stack.start_ingest()
            with contextmanager(_serve)(stack.settings) as url:
                yield stack, url


def test_a_thermometer_shows_from_its_first_reading_without_a_reload(
    empty: tuple[IotStack, str], page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    stack, url = empty
    log_in(page, url, ADMIN)
    page.get_by_role("status").filter(has_text="No thermometer has reported yet").wait_for()
    page.locator("#live", has_text="live").wait_for()  # the page's subscription is up
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    mqtt = TestPublisher(stack.mqtt_url)
    try:
        probes = [
            {"id": "pit", "temp_c": 112.0, "status": "ok"},
            {"id": "brisket", "temp_c": 38.5, "status": "ok"},
        ]
        mqtt.publish(telemetry_topic(DEVICE), encode(telemetry(DEVICE, 1, probes)))

        def stored() -> bool:
            with stack.session() as session:
                query = select(func.count()).where(Reading.device_id == DEVICE)
                return bool(session.scalar(query))

        wait_for(stored, 60, interval=0.02, what="the first reading stored")
        stored_at = time.monotonic()
        temp(page, "brisket").filter(has_text="38.5 °C").wait_for(timeout=5000)
        shown = time.monotonic() - stored_at
        assert shown < 1.0, f"the first reading took {shown:.2f} s to show after it was stored"
        assert temp(page, "pit").inner_text() == "112.0 °C"
        page.locator("figure.chart canvas").first.wait_for(timeout=5000)
        assert navigations == [], navigations  # no reload
        # the next reading arrives live on the same page, with a probe plugged in mid-cook
        probes[1]["temp_c"] = 40.0
        probes.append({"id": "ribs", "temp_c": 21.0, "status": "ok"})
        mqtt.publish(telemetry_topic(DEVICE), encode(telemetry(DEVICE, 2, probes)))
        temp(page, "brisket").filter(has_text="40.0 °C").wait_for(timeout=5000)
        temp(page, "ribs").filter(has_text="21.0 °C").wait_for(timeout=5000)
        screenshot(page, "first-reading")
    finally:
        mqtt.close()
