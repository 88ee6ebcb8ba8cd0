"""The control-plane console in a real Chromium, against the whole stack (API under uvicorn, a
real ``smokehouse worker``, embedded SQLite + SQLite broker): log in, browse rules and queues,
and watch a state machine's execution advance state by state; a viewer key sees everything and
can change nothing."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from playwright.sync_api import expect

from app.db import get_database, utcnow
from app.scaling.models import ScalingDecision
from tests.e2e.conftest import log_in, secret_sent, unlabelled_controls
from tests.integration.workflows.stack import Stack, stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]

ADMIN, VIEWER = "admin-7Qw3vN9xK2pL5tR8yB4m", "viewer-4Hj8sD2fG6kZ9cV3nX7q"
KEYS = f"AKADMIN:{ADMIN}:admin,AKVIEW:{VIEWER}:viewer"
WAITS = {
    "Comment": "Two visible one-second pauses between a Pass and the end.",
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": {"ready": True}, "Next": "Smoke"},
        "Smoke": {"Type": "Wait", "Seconds": 2, "Next": "Rest"},
        "Rest": {"Type": "Wait", "Seconds": 2, "Next": "Serve"},
        "Serve": {"Type": "Succeed"},
    },
}


#: After the developer guide's variables page (docs.aws.amazon.com/step-functions/latest/dg/
#: workflow-variables.html), in JSONata: a price fetched once is kept in $price and read later.
PRICED = {
    "QueryLanguage": "JSONata",
    "StartAt": "Fetch",
    "States": {
        "Fetch": {
            "Type": "Pass",
            "Output": {"cut": "{% $states.input.cut %}"},
            "Assign": {"price": 42.5, "cut": "{% $states.input.cut %}"},
            "Next": "Check",
        },
        "Check": {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $price > 40 %}", "Next": "Rest"}],
            "Default": "Serve",
        },
        "Rest": {"Type": "Wait", "Seconds": 1, "Next": "Serve"},
        "Serve": {"Type": "Pass", "Output": "{% $cut & ' at ' & $string($price) %}", "End": True},
    },
}


#: A distributed Map over inline items: each item is an execution of the Map Run.
FANNED = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.cuts",
            "Label": "Cuts",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Trim",
                "States": {"Trim": {"Type": "Pass", "End": True}},
            },
            "End": True,
        }
    },
}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e-console")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        patch.chdir(tmp)
        with stack("embedded", tmp, {}, access_keys=KEYS) as built:
            yield built


def node(page: Any, state: str) -> Any:
    return page.locator(f'svg.graph g.node[data-state="{state}"]')


@pytest.mark.expected_console(r"401 .*/auth/session|status of 401")  # the refused key
def test_login_refuses_a_bad_key_and_opens_the_console(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    page.goto(console.url + "/")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("That API key is not valid.").wait_for()
    screenshot(page, "refused")

    sent: list[Any] = []
    page.on("request", lambda request: sent.append(request))  # not a builtin: Playwright tags it
    log_in(page, console.url, ADMIN)
    page.get_by_role("link", name="Rules").click()
    page.get_by_role("heading", name="smokehouse-test-events").wait_for()
    assert page.locator("#role").inner_text() == "admin"
    page.get_by_role("link", name="Dead letters").click()
    page.get_by_role("heading", name="Dead letters").wait_for()
    page.get_by_role("link", name="State machines").click()
    page.get_by_role("link", name="hello-world").wait_for()
    screenshot(page, "machines")
    page.reload()  # the session token is kept for the tab's session
    page.get_by_role("link", name="hello-world").wait_for()
    # Only the login carried the key's secret (GraphQL, HTTP and the socket got the token).
    assert any(r.url.endswith("/auth/session") for r in sent)
    assert secret_sent(sent, ADMIN) == []


def test_an_execution_advances_state_by_state(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    console.create("e2e-waits", WAITS)
    log_in(page, console.url, ADMIN)
    page.goto(console.url + "/#/machines/e2e-waits")
    page.get_by_text("No executions yet.").wait_for()
    assert node(page, "Smoke").count() == 1
    assert node(page, "Serve").count() == 1
    page.get_by_label("Input (JSON)").fill('{"brisket": 1}')
    page.get_by_role("button", name="Start execution").click()

    node(page, "Smoke").and_(page.locator(".active")).wait_for()
    assert "done" in (node(page, "Prepare").get_attribute("class") or "")
    screenshot(page, "smoke-active")
    node(page, "Rest").and_(page.locator(".active")).wait_for()
    assert "done" in (node(page, "Smoke").get_attribute("class") or "")
    screenshot(page, "rest-active")
    page.locator('[data-testid="execution-status"]', has_text="SUCCEEDED").wait_for()
    assert "done" in (node(page, "Rest").get_attribute("class") or "")
    history = page.get_by_role("table", name="History").inner_text()
    assert "WaitStateEntered" in history
    assert "ExecutionSucceeded" in history
    screenshot(page, "succeeded")
    executions = page.get_by_role("table", name="Executions")
    assert "SUCCEEDED" in executions.inner_text()  # the list follows the live execution too
    assert unlabelled_controls(page) == []
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "succeeded-desktop")


def test_queues_chart_depth_demand_and_decisions(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    queue = f"e2e-{uuid.uuid4().hex[:6]}"
    now = utcnow()
    with get_database(console.settings.sqlalchemy_url).session() as session:
        for i, (queued, desired) in enumerate([(0, 0), (12, 2), (30, 4), (4, 4), (0, 1)]):
            session.add(
                ScalingDecision(
                    id=str(uuid.uuid4()),
                    queue=queue,
                    decided_at=now - timedelta(seconds=60 * (5 - i)),
                    previous=[0, 0, 2, 4, 4][i],
                    desired=desired,
                    recommendation=desired,
                    queued=queued,
                    reserved=0,
                    running=min(queued, desired),
                    live_workers=desired,
                    busy_workers=min(queued, desired),
                    reason=f"queue depth {queued}",
                    backend="process",
                    error=None,
                )
            )
    # an SQS queue with a message, and a schedule: the same view shows them
    sqs, scheduler = (
        boto3.client(
            service,
            endpoint_url=console.url,
            region_name="us-east-1",
            aws_access_key_id="AKADMIN",
            aws_secret_access_key=ADMIN,
        )
        for service in ("sqs", "scheduler")
    )
    url = sqs.create_queue(QueueName=f"orders-{queue}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="two racks of ribs")
    scheduler.create_schedule(
        Name=f"stoke-{queue}",
        ScheduleExpression="rate(30 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": f"arn:aws:sqs:us-east-1:000000000000:orders-{queue}",
            "RoleArn": "arn:aws:iam::000000000000:role/x",
            "Input": "{}",
        },
    )
    log_in(page, console.url, VIEWER)
    page.get_by_role("link", name="Queues").click()
    sqs_row = page.get_by_role("table", name="SQS queues").get_by_role(
        "row", name=re.compile(f"orders-{queue}")
    )
    expect(sqs_row).to_contain_text("1")  # one visible message
    schedule_row = page.get_by_role("table", name="Schedules").get_by_role(
        "row", name=re.compile(f"stoke-{queue}")
    )
    expect(schedule_row).to_contain_text("rate(30 minutes)")
    expect(schedule_row).to_contain_text("ENABLED")
    figure = page.get_by_role("figure", name=f"Queue {queue} over time")
    figure.locator("canvas").wait_for()
    assert "queue depth 0" in figure.inner_text()

    # The workers table is its own query: wait for it to render (count() would not). The stack's
    # worker may be idle or busy (a timer from another test): either is a live worker's state.
    state = page.get_by_role("table", name="Workers").get_by_text(re.compile(r"^(idle|busy)$"))
    expect(state.first).to_be_visible(timeout=10_000)
    screenshot(page, "queues")


def test_a_viewer_sees_everything_and_changes_nothing(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    log_in(page, console.url, VIEWER)
    assert page.locator("#role").inner_text() == "viewer (read-only)"
    page.goto(console.url + "/#/machines/hello-world")
    node(page, "Pause").wait_for()
    assert page.get_by_role("button", name="Start execution").count() == 0
    page.goto(console.url + "/#/rules")
    page.get_by_role("heading", name="smokehouse-test-events").wait_for()
    assert page.get_by_role("button", name="Enable").count() == 0
    refused = page.evaluate(
        """async (query) => {
            const r = await fetch("/graphql", {method: "POST",
              headers: {"content-type": "application/json",
                        "authorization": "Bearer " + sessionStorage.getItem("smokehouse.session")},
              body: JSON.stringify({query})});
            return (await r.json()).errors[0].message;
        }""",
        'mutation { startExecution(stateMachine: "hello-world") { arn } }',
    )
    assert "read-only" in refused
    screenshot(page, "viewer")


def test_ci_jobs_show_their_runner_and_timeline(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    from app.runners.models import Runner, RunnerJob, RunnerJobEvent

    now = utcnow()
    with get_database(console.settings.sqlalchemy_url).session() as session:
        job = RunnerJob(
            gitlab="https://gitlab.example",
            job_id=4242,
            project_id=7,
            project_name="smokehouse/brisket",
            job_name="build-image",
            stage="build",
            ref="main",
            status="running",
            phase="running",
            profile="ec2-small",
            tags=["docker"],
            start_attempts=1,
            created_at=now - timedelta(minutes=3),
            updated_at=now,
        )
        session.add(job)
        session.flush()
        for status, seconds in (("pending", 180), ("assigned", 178), ("running", 60)):
            session.add(
                RunnerJobEvent(job_pk=job.id, status=status, at=now - timedelta(seconds=seconds))
            )
        session.add(
            Runner(
                name="sh-runner-4242-1",
                job_pk=job.id,
                kind="ec2",
                profile="ec2-small",
                state="running",
                pool=True,
                provider_id="i-0123456789abcdef0",
                instance_type="t3.small",
                market="spot",
                subnet_id="subnet-0abc",
                created_at=now - timedelta(minutes=2),
                updated_at=now,
                started_at=now - timedelta(minutes=2),
            )
        )
    log_in(page, console.url, ADMIN)
    page.get_by_role("link", name="CI jobs").click()
    jobs = page.get_by_role("table", name="Jobs")
    jobs.get_by_text("#4242 build-image").wait_for()
    assert "sh-runner-4242-1" in jobs.inner_text()
    # queued pending → running (2 min), a warm runner assigned in 2 s
    assert "2.0 min" in jobs.inner_text()
    assert "assigned 2.0 s" in jobs.inner_text()
    assert "warm" in jobs.inner_text()
    assert page.locator(".timeline .tick").count() >= 3
    runners = page.get_by_role("table", name="Runners")
    assert "t3.small spot" in runners.inner_text()
    assert "subnet-0abc" in runners.inner_text()
    assert runners.get_by_role("button", name="Terminate").count() == 1
    screenshot(page, "jobs")


def test_a_dead_letter_is_redriven_from_the_console(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    import boto3

    from tests.integration.workflows.stack import KEY_ID, KEY_SECRET

    events = boto3.client(
        "events",
        endpoint_url=console.url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=KEY_SECRET,
    )
    # Names of this attempt's own: a rerun must not find the first attempt's dead letters.
    suffix = uuid.uuid4().hex[:8]
    rule, source = f"e2e-rejects-{suffix}", f"e2e.orders.{suffix}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(
        Rule=rule,
        Targets=[
            {
                "Id": "reject",
                "Arn": "arn:smokehouse:handler:wf-reject",
                "RetryPolicy": {"MaximumRetryAttempts": 0},
            }
        ],
    )
    events.put_events(Entries=[{"Source": source, "DetailType": "Order", "Detail": "{}"}])

    log_in(page, console.url, ADMIN)
    page.goto(console.url + "/#/dead-letters")
    table = page.get_by_role("table", name="Dead-lettered deliveries")
    for _ in range(100):  # the worker dead-letters it after its one attempt
        if table.get_by_text(rule).count():
            break
        page.wait_for_timeout(200)
        page.reload()
    row = table.get_by_role("row").filter(has_text=rule)
    assert "rejected" in row.inner_text()
    screenshot(page, "dead")
    row.get_by_role("button", name="Redrive").click()
    page.get_by_role("status").filter(has_text="redriven").wait_for()
    page.get_by_label("Show redriven ones too").check()

    rows = page.get_by_role("table", name="Dead-lettered deliveries").get_by_role("row")
    rejected = rows.filter(has_text=rule)
    for _ in range(30):  # the worker ran it again, and it died again: a second dead letter
        try:
            expect(rejected).to_have_count(2, timeout=1000)  # waits for the re-render
            break
        except AssertionError:
            page.get_by_label("Show redriven ones too").uncheck()
            page.get_by_label("Show redriven ones too").check()
    expect(rejected).to_have_count(2, timeout=5000)
    screenshot(page, "redriven")


BRANCHY = {
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.hot", "BooleanEquals": True, "Next": "Both"}],
            "Default": "Skip",
        },
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Mop", "States": {"Mop": {"Type": "Pass", "End": True}}},
                {"StartAt": "Spritz", "States": {"Spritz": {"Type": "Pass", "End": True}}},
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Oops"}],
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "StartAt": "Slice",
                "States": {"Slice": {"Type": "Pass", "End": True}},
            },
            "End": True,
        },
        "Skip": {"Type": "Succeed"},
        "Oops": {"Type": "Fail", "Error": "Burnt"},
    },
}


def test_branching_machines_are_drawn_whole(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    console.create("e2e-branchy", BRANCHY)
    log_in(page, console.url, VIEWER)
    page.goto(console.url + "/#/machines/e2e-branchy")
    for state in ("Check", "Both", "Mop", "Spritz", "Each", "Slice", "Skip", "Oops"):
        node(page, state).wait_for()
    assert page.locator("svg.graph path.edge-catch").count() == 1
    assert page.locator("svg.graph path.edge-branch").count() >= 3
    screenshot(page, "graph")


def test_a_jsonata_machine_is_drawn_as_jsonata_and_shows_its_variables(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    console.create("e2e-priced", PRICED)
    log_in(page, console.url, ADMIN)
    page.goto(console.url + "/#/machines/e2e-priced")
    page.get_by_text("No executions yet.").wait_for()
    assert "JSONata" in (node(page, "Fetch").text_content() or "")
    assert "lang-jsonata" in (node(page, "Check").get_attribute("class") or "")
    assert page.locator("svg.graph path.edge-choice title", has_text="$price > 40").count() == 1
    page.get_by_label("Input (JSON)").fill('{"cut": "brisket"}')
    page.get_by_role("button", name="Start execution").click()
    page.locator('[data-testid="execution-status"]', has_text="SUCCEEDED").wait_for()
    listed = page.get_by_role("table", name="Executions").locator("tbody tr").first
    expect(listed.locator("td").nth(3)).not_to_have_text("—")  # its end, live
    variables = page.get_by_role("table", name="Variables")
    expect(variables.locator('tr[data-variable="price"]')).to_contain_text("42.5")
    expect(variables.locator('tr[data-variable="cut"]')).to_contain_text('"brisket"')
    expect(variables.locator('tr[data-variable="cut"]')).to_contain_text("Fetch")
    assert unlabelled_controls(page) == []
    screenshot(page, "variables")


def test_a_distributed_map_shows_its_run_and_the_runs_executions(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    console.create("e2e-fanned", FANNED)
    log_in(page, console.url, ADMIN)
    page.goto(console.url + "/#/machines/e2e-fanned")
    page.get_by_label("Input (JSON)").fill('{"cuts": ["brisket", "ribs", "wings"]}')
    page.get_by_role("button", name="Start execution").click()
    page.locator('[data-testid="execution-status"]', has_text="SUCCEEDED").wait_for()
    runs = page.get_by_role("table", name="Map Runs")
    expect(runs.locator("tbody tr")).to_have_count(1)
    run = runs.locator("tbody tr").first
    expect(run.locator("td").nth(2)).to_have_text("3")  # items succeeded
    expect(run.locator("td").nth(4)).to_have_text("3")  # of 3
    screenshot(page, "map-run")
    run.get_by_role("link", name="e2e-fanned/Cuts").click()
    executions = page.get_by_role("table", name="Executions")
    expect(executions.locator("tbody tr")).to_have_count(3)
    expect(executions).not_to_contain_text("RUNNING")
    assert page.get_by_role("button", name="Start execution").count() == 0  # the run's own
    page.get_by_role("link", name="e2e-fanned / ").first.wait_for()  # each names its parent
    assert unlabelled_controls(page) == []


@pytest.mark.expected_console(r"ERR_INTERNET_DISCONNECTED|Failed to load resource")  # offline
def test_installable_and_opens_offline_saying_the_server_is_unreachable(
    console: Stack, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    favicon = page.request.get(console.url + "/favicon.ico")
    assert favicon.ok
    assert favicon.headers["content-type"] == "image/png"
    log_in(page, console.url, ADMIN)
    manifest = page.evaluate(
        """async () => {
            const link = document.querySelector('link[rel="manifest"]');
            const m = await (await fetch(link.href)).json();
            const status = async (i) => [i.sizes, (await fetch(i.src)).status];
            const icons = await Promise.all(m.icons.map(status));
            return {...m, iconStatus: icons};
        }"""
    )
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/#/grill"
    assert ["192x192", 200] in manifest["iconStatus"]
    assert ["512x512", 200] in manifest["iconStatus"]
    scope = page.evaluate("async () => (await navigator.serviceWorker.ready).scope")
    assert scope == console.url + "/"
    # the service worker has the shell; no data, session or GraphQL answer is in its cache
    cached = page.evaluate(
        """async () => {
            const out = [];
            for (const name of await caches.keys())
              for (const r of await (await caches.open(name)).keys())
                out.push(new URL(r.url).pathname);
            return out;
        }"""
    )
    assert "/" in cached
    assert "/ui/js/main.js" in cached
    assert not [p for p in cached if "graphql" in p or "auth" in p]

    page.context.set_offline(True)
    try:
        page.reload()
        page.get_by_role("alert").filter(has_text="cannot be reached").wait_for()
        assert page.locator("header .brand").inner_text() == "smokehouse"  # the shell opened
        screenshot(page, "offline")
    finally:
        page.context.set_offline(False)
