"""The grill view in a real Chromium against the whole thermometer path: a private Mosquitto,
``smokehouse ingest`` and a worker as subprocesses, PostgreSQL and Redis, the API under uvicorn.
A reading published over MQTT shows on its probe card within a second; °C/°F sticks; a dropped
WebSocket catches up what it missed; an alarm appears live and is acknowledged; a past cook
has its chart and a CSV export."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.iot.alarms.models import Alarm
from app.iot.models import Cook, Device, Probe, Reading
from tests.e2e.conftest import ARTIFACTS, chromium_path, log_in, unlabelled_controls
from tests.integration.iot.conftest import (
    IotStack,
    TestPublisher,
    add_device,
    encode,
    iot_stack,
    telemetry,
    telemetry_topic,
)
from tests.integration.iot.test_alarms import Receiver
from tests.integration.workflows.stack import _serve
from tests.services import unavailable, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]

ADMIN, VIEWER = "admin-7Qw3vN9xK2pL5tR8yB4m", "viewer-4Hj8sD2fG6kZ9cV3nX7q"
KEYS = f"AKADMIN:{ADMIN}:admin,AKVIEW:{VIEWER}:viewer"
DEVICE = "e2e-pit"


@dataclass
class Grill:
    stack: IotStack
    url: str
    mqtt: TestPublisher
    seq: int = 0

    def publish(self, pit: float, brisket: float) -> int:
        self.seq += 1
        probes = [
            {"id": "pit", "temp_c": pit, "status": "ok"},
            {"id": "brisket", "temp_c": brisket, "status": "ok"},
        ]
        self.mqtt.publish(telemetry_topic(DEVICE), encode(telemetry(DEVICE, self.seq, probes)))
        return self.seq

    def stored(self, seq: int, timeout: float = 20) -> None:
        def done() -> bool:
            with self.stack.session() as session:
                query = select(func.count()).where(Reading.device_id == DEVICE, Reading.seq == seq)
                return bool(session.scalar(query))

        try:
            wait_for(done, timeout, what=f"reading {seq} stored")
        except AssertionError:
            raise AssertionError(self.stack.logs()) from None


@contextmanager
def grill_stack(tmp: Path) -> Iterator[Grill]:
    # the tests' Apprise receiver (json://) listens on 127.0.0.1: allowed explicitly
    with iot_stack("production", tmp, access_keys=KEYS, egress_allow="127.0.0.1") as stack:
        add_device(stack.settings.sqlalchemy_url, DEVICE, name="Backyard smoker")
        stack.start_worker()
        stack.start_ingest()
        with contextmanager(_serve)(stack.settings) as url:
            mqtt = TestPublisher(stack.mqtt_url)
            try:
                grill = Grill(stack, url, mqtt)
                grill.stored(grill.publish(110.0, 40.0), timeout=60)  # workers warmed up
                with stack.session() as session:
                    for probe in session.scalars(select(Probe).where(Probe.device_id == DEVICE)):
                        if probe.probe_id == "brisket":
                            probe.target_c, probe.high_c = 95.0, 110.0
                        else:
                            probe.role, probe.setpoint_c, probe.pit_band_c = "pit", 115.0, 10.0
                yield grill
            finally:
                mqtt.close()


@pytest.fixture(scope="module")
def grill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grill]:
    tmp = tmp_path_factory.mktemp("e2e-grill")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        patch.chdir(tmp)
        with grill_stack(tmp) as built:
            yield built


def temp(page: Any, probe: str) -> Any:
    return page.locator(f'[data-testid="temp-{probe}"]')


def open_grill(page: Any, grill: Grill, key: str = ADMIN) -> None:
    log_in(page, grill.url, key)
    temp(page, "brisket").wait_for()
    page.locator("#live", has_text="live").wait_for()


def test_a_reading_published_over_mqtt_shows_within_a_second(
    grill: Grill, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    open_grill(page, grill)
    page.locator("figure.chart canvas").first.wait_for()
    for pit, brisket in [(116.2, 61.5), (117.4, 63.8)]:
        started = time.monotonic()
        grill.publish(pit, brisket)
        temp(page, "brisket").filter(has_text=f"{brisket:.1f} °C").wait_for(timeout=5000)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"the reading took {elapsed:.2f}s to show"
    assert temp(page, "pit").inner_text() == "117.4 °C"
    brisket_card = page.locator('[data-probe="brisket"]')
    assert "95.0 °C" in brisket_card.inner_text()  # its target
    screenshot(page, "celsius")

    page.get_by_role("button", name="Switch between °C and °F").click()
    assert temp(page, "brisket").inner_text() == f"{63.8 * 1.8 + 32:.1f} °F"
    page.reload()  # the choice is kept
    temp(page, "brisket").filter(has_text="°F").wait_for()
    screenshot(page, "fahrenheit")
    page.get_by_role("button", name="Switch between °C and °F").click()
    temp(page, "brisket").filter(has_text="°C").wait_for()


def test_after_a_dropped_connection_the_view_catches_up(
    grill: Grill, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    open_grill(page, grill)
    page.evaluate(
        """() => { const s = window.smokehouse.socket;
                   s.realConnect = s.connect; s.connect = () => {}; s.close(); }"""
    )
    page.locator("#live", has_text="reconnecting").wait_for()
    seq = grill.publish(121.0, 70.3)  # while the browser is away
    grill.stored(seq)
    time.sleep(0.5)  # nothing can arrive: still the old value
    assert temp(page, "brisket").inner_text() != "70.3 °C"
    page.evaluate("() => { const s = window.smokehouse.socket; s.connect = s.realConnect; }")
    page.evaluate("() => window.smokehouse.socket.connect()")
    temp(page, "brisket").filter(has_text="70.3 °C").wait_for()
    page.locator("#live", has_text="live").wait_for()
    screenshot(page, "caught-up")
    grill.publish(122.0, 71.0)  # and live again
    temp(page, "brisket").filter(has_text="71.0 °C").wait_for(timeout=5000)


def test_an_alarm_appears_live_and_is_acknowledged(
    grill: Grill, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    """The whole alarm path: a reading over MQTT above the brisket's high limit, the shipped
    iot-alarms rule and state machine open a ``high`` alarm, the banner shows it live; it is
    acknowledged from the banner; back under the limit it clears and the banner goes; the
    cook's page then shows it with where its notification went."""
    receiver = Receiver()
    with grill.stack.session() as session:
        device = session.get(Device, DEVICE)
        assert device is not None
        device.notify_urls = [receiver.url]
    try:
        _alarm_path(grill, page, screenshot, receiver)
    finally:
        receiver.close()
        with grill.stack.session() as session:
            device = session.get(Device, DEVICE)
            assert device is not None
            device.notify_urls = []


def _alarm_path(
    grill: Grill, page: Any, screenshot: Callable[[Any, str], Path], receiver: Receiver
) -> None:
    open_grill(page, grill)
    grill.publish(120.0, 112.5)
    banner = page.locator('.alarm[data-kind="high"]')
    banner.wait_for(timeout=15_000)
    assert "112.5 °C" in banner.inner_text()  # the server's message
    screenshot(page, "alarm")
    alarm_id = int(banner.get_attribute("data-alarm") or 0)
    banner.get_by_role("button", name="Acknowledge").click()
    banner.get_by_text("acknowledged").wait_for()
    with grill.stack.session() as session:
        stored = session.get(Alarm, alarm_id)
        assert stored is not None
        assert (stored.kind, stored.state) == ("high", "acknowledged")
    screenshot(page, "acknowledged")

    # a viewer sees the alarm but has no button, and the server refuses the mutation anyway
    page.get_by_role("button", name="Log out").click()
    open_grill(page, grill, VIEWER)
    viewer_banner = page.locator(f'.alarm[data-alarm="{alarm_id}"]')
    viewer_banner.wait_for()
    assert viewer_banner.get_by_role("button").count() == 0
    refused = page.evaluate(
        """async (id) => {
            const r = await fetch("/graphql", {method: "POST",
              headers: {"content-type": "application/json",
                        "authorization": "Bearer " + sessionStorage.getItem("smokehouse.session")},
              body: JSON.stringify({query: `mutation { acknowledgeAlarm(id: ${id}) { id } }`})});
            return (await r.json()).errors[0].message;
        }""",
        alarm_id,
    )
    assert "read-only" in refused

    grill.publish(120.0, 100.0)  # back under the limit (with hysteresis): it clears
    viewer_banner.wait_for(state="detached", timeout=15_000)

    # the cook's page keeps the history: opened, acknowledged, cleared, and what was notified
    def handled() -> bool:  # the opening's notification ran (in the worker); acknowledged,
        with grill.stack.session() as session:  # the alarm's clearing notifies no one
            stored = session.get(Alarm, alarm_id)
            return stored is not None and len(stored.notifications or []) == 1

    wait_for(handled, 20, what="the alarm's notification handled")
    assert "Backyard smoker: Too hot" in [post["title"] for post in receiver.posts]
    with grill.stack.session() as session:
        cook_id = session.scalar(
            select(Cook.id).where(Cook.device_id == DEVICE).order_by(Cook.id.desc())
        )
    page.goto(f"{grill.url}/#/grill/cook/{cook_id}")
    history = page.get_by_role("table", name="Alarms during this cook")
    row = history.locator(f'tr[data-alarm="{alarm_id}"]')
    row.wait_for()
    cells = row.get_by_role("cell").all_inner_texts()
    assert all(cell.strip() not in ("", "—") for cell in cells[:4]), cells  # all three times
    assert "Opened: sent → json://127.0.0.1" in cells[4]
    assert "Cleared" not in cells[4]
    screenshot(page, "alarm-history")


def test_a_past_cook_has_a_chart_and_a_csv_export(
    grill: Grill, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    with grill.stack.session() as session:
        cook = session.scalars(select(Cook).where(Cook.device_id == DEVICE)).first()
        assert cook is not None
        cook_id = cook.id
        readings = session.scalar(
            select(func.count()).where(Reading.cook_id == cook_id, Reading.probe_id == "brisket")
        )
    open_grill(page, grill)
    page.get_by_role("link", name=f"Cook #{cook_id}").click()
    page.locator("figure.chart canvas").wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0][0] == "time"
    assert set(rows[0][1:]) == {"pit_c", "brisket_c"}
    assert len(rows) - 1 == readings  # every reading: fewer than the CSV's 10,000 points
    screenshot(page, "cook")


def test_an_admin_sets_a_probe_target_in_the_unit_shown(
    grill: Grill, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    open_grill(page, grill)
    page.get_by_role("button", name="Switch between °C and °F").click()
    page.get_by_label("Probe", exact=True).select_option("brisket")
    page.get_by_label("Target (°F)").fill("199.4")  # 93 °C
    page.get_by_role("button", name="Save probe").click()
    page.get_by_text("Saved").wait_for()
    card = page.locator('[data-probe="brisket"]')
    assert "199.4 °F" in card.inner_text()
    with grill.stack.session() as session:
        probe = session.scalars(
            select(Probe).where(Probe.device_id == DEVICE, Probe.probe_id == "brisket")
        ).one()
        assert probe.target_c == pytest.approx(93.0)
    screenshot(page, "target-set")
    page.get_by_role("button", name="Switch between °C and °F").click()
    page.get_by_label("Target (°C)").fill("95")
    page.get_by_role("button", name="Save probe").click()
    card.get_by_text("95.0 °C").wait_for()
    assert unlabelled_controls(page) == []
    page.reload()
    temp(page, "brisket").wait_for()
    page.keyboard.press("Tab")  # the first stop skips the navigation
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_an_admin_routes_alarms_to_a_phone_and_tests_it_from_the_app(
    grill: Grill, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    receiver = Receiver()
    secret_url = receiver.url.replace("json://", "json://pit:s3cret-pass@")
    try:
        open_grill(page, grill)
        section = page.get_by_role("region", name="Notifications")
        section.get_by_text("No notification targets yet.").wait_for()
        section.get_by_label("Apprise URL").fill("not a url at all")
        section.get_by_role("button", name="Add").click()
        section.get_by_role("status").filter(has_text="Apprise understands").wait_for()

        section.get_by_label("Apprise URL").fill(secret_url)
        section.get_by_role("button", name="Add").click()
        target = section.get_by_role("listitem")
        target.wait_for()
        shown = target.inner_text()
        assert "s3cret-pass" not in shown  # masked, as Apprise's privacy mode shows it
        assert "127.0.0.1" in shown
        assert "s3cret-pass" not in page.content()

        section.get_by_role("button", name="Send a test notification").click()
        section.get_by_role("status").filter(has_text="Test notification sent").wait_for(
            timeout=20_000
        )
        [post] = receiver.posts
        assert post["title"] == "Backyard smoker: test notification"
        screenshot(page, "notifications")

        target.get_by_role("button", name=re.compile("^Remove")).click()
        section.get_by_text("No notification targets yet.").wait_for()
        with grill.stack.session() as session:
            device = session.get(Device, DEVICE)
            assert device is not None
            assert device.notify_urls == []
        assert unlabelled_controls(page) == []
    finally:
        receiver.close()


VIEWS = [
    "#/grill",
    "#/rules",
    "#/dead-letters",
    "#/machines",
    "#/machines/hello-world",
    "#/queues",
    "#/jobs",
]


def test_every_view_has_no_serious_accessibility_violation(grill: Grill, page: Any) -> None:
    """axe-core (the engine behind Lighthouse's accessibility audit) on the login page and on
    every view with data in it, as an admin (who sees the most controls), on a phone's width."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    found: dict[str, list[str]] = {}

    def audit(where: str) -> None:
        results = axe.run(page).response
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} -- {v['nodes'][0]['target']}"
            for v in results["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if serious:
            found[where] = serious

    page.goto(grill.url + "/")
    page.get_by_label("API key").wait_for()
    audit("login")
    open_grill(page, grill)
    with grill.stack.session() as session:
        cook_id = session.scalar(select(Cook.id).where(Cook.device_id == DEVICE))
    for view in [*VIEWS, f"#/grill/cook/{cook_id}"]:
        page.goto(f"{grill.url}/{view}")
        page.locator("main h1").first.wait_for()
        page.wait_for_load_state("networkidle")
        audit(view)
    assert not found, found


LIGHTHOUSE = Path(__file__).resolve().parent / "lighthouse"
#: The grill view's floor, as the issue sets it (Lighthouse 12.2.3, mobile, simulated throttling).
LIGHTHOUSE_MINIMUM = {"performance": 90, "accessibility": 95, "best-practices": 95}


def lighthouse(grill: Grill, report: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (LIGHTHOUSE / "node_modules" / "lighthouse").is_dir():
        unavailable("Lighthouse (npm ci --prefix tests/e2e/lighthouse)")
    done = subprocess.run(
        [str(node), str(LIGHTHOUSE / "audit.mjs"), grill.url, ADMIN, "#/grill", str(report)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "SMOKEHOUSE_TEST_CHROMIUM": chromium_path()},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print("lighthouse", json.dumps(result))
    assert result["finalUrl"].endswith("#/grill")
    assert result["probeCards"] >= 2  # the logged-in grill view was measured, not the login
    return result


def test_lighthouse_on_the_grill_view_logged_in_on_a_phone(grill: Grill, tmp_path: Path) -> None:
    """Lighthouse's performance score varies from run to run with the machine's load (its
    simulated throttling scales the main-thread time it observes: total blocking time went from
    30 ms on a quiet machine to 670 ms with CI's other tests on the two cores). Its documentation
    ("Lighthouse Variability") says to judge the median of several runs: a first run at the floor
    is enough, otherwise the median of three is judged."""
    runs = [lighthouse(grill, tmp_path / "lighthouse-1.json")]
    low = {k: v for k, v in runs[0]["scores"].items() if v < LIGHTHOUSE_MINIMUM[k]}
    if low:
        runs += [lighthouse(grill, tmp_path / f"lighthouse-{n}.json") for n in (2, 3)]
    median = sorted(runs, key=lambda r: r["scores"]["performance"])[len(runs) // 2]
    report = tmp_path / f"lighthouse-{runs.index(median) + 1}.json"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(report, ARTIFACTS / "lighthouse-grill.json")
    if report.with_suffix(".jpg").exists():
        shutil.copy(report.with_suffix(".jpg"), ARTIFACTS / "lighthouse-grill.jpg")
    low = {k: v for k, v in median["scores"].items() if v < LIGHTHOUSE_MINIMUM[k]}
    assert not low, [r["scores"] for r in runs]
