"""Upgrading keeps data: the 2026-11-26 release (commit ee3c770, schema 0010) runs from this
repository's history and stores what a user would have — a state machine with executions it
started but never ran (no worker yet: mid-flight), a rule whose delivery is still pending, a GitLab
job, a thermometer's readings — through its own API and its own code. Then this code migrates the
database and the whole system (``smokehouse run``) comes up on it: every row is still there,
every execution finishes, the pending delivery is delivered, and GraphQL shows it all.

On SQLite (a laptop's ``make run`` data dir) and on PostgreSQL (compose).
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from app.migrate import head_revision
from tests.conftest import TEST_SECRET_KEY
from tests.integration.cli import cli_env, run_cli, smokehouse_argv
from tests.integration.runners.payloads import job_hook
from tests.services import ROOT, free_port, postgres_database, unavailable, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RELEASE, RELEASE_SCHEMA = "ee3c770", "0010"
KEY_ID, SECRET = "AKUPGRADE", "upgrade-key-5Tq8Wm2Rx7Bn4Kd9"
HOOK_TOKEN = "hook-upgrade-3Gk8Tw2Qm7Rn5Bx1"
ROLE = "arn:aws:iam::000000000000:role/upgrade"
WAIT_THEN_PASS = {
    "StartAt": "Wait",
    "States": {
        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": {"ok": True}, "End": True},
    },
}
#: Run with the old release on sys.path: readings through its own ingest store.
STORE_READINGS = """
import sys
from datetime import UTC, datetime, timedelta
from sqlalchemy import text
from app.config import load_settings
from app.db import get_database
from app.iot.enrich import parse_messages, store_batch
from app.iot.settings import IotSettings
settings = load_settings()
database = get_database(settings.sqlalchemy_url)
with database.session() as session:
    session.execute(text(
        "INSERT INTO iot_devices (id, name, mqtt_username, notify_urls, home_assistant_discovery,"
        " created_at) VALUES ('pit', 'Backyard', 'pit', '[]', false, :now)"
    ), {"now": datetime.now(UTC)})
start = datetime.now(UTC) - timedelta(minutes=10)
messages = [
    {"device_id": "pit", "seq": n, "ts": (start + timedelta(seconds=5 * n)).isoformat(),
     "received_at": (start + timedelta(seconds=5 * n + 1)).isoformat(),
     "probes": [{"id": "pit", "temp_c": 110.0 + n % 3, "status": "ok"},
                {"id": "meat1", "temp_c": 40.0 + n / 10, "status": "ok"}]}
    for n in range(1, 61)
]
parsed, skipped = parse_messages({"messages": messages})
assert skipped == 0
with database.session() as session:
    store_batch(session, IotSettings(), parsed)
"""


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The old release's source, from this repository's history."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", RELEASE], cwd=ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        unavailable(f"commit {RELEASE} (a clone with history)")
    tree = tmp_path_factory.mktemp("release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings: dict[str, Any] = {"data_dir": tmp_path / "data"}
    if request.param == "sqlite":
        yield settings
        return
    with postgres_database() as url:
        yield {**settings, "database_url": url, "secret_key": TEST_SECRET_KEY}


def started(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=out, start_new_session=True)


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def ready() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=60, interval=0.3, what=f"{base} to be ready")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


def client(base: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=base,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )


def seed_with_the_release(base: str) -> dict[str, Any]:
    sfn, events = client(base, "stepfunctions"), client(base, "events")
    machine = sfn.create_state_machine(
        name="upgrade", definition=json.dumps(WAIT_THEN_PASS), roleArn=ROLE
    )["stateMachineArn"]
    executions = [
        sfn.start_execution(stateMachineArn=machine, name=f"in-flight-{n}", input='{"n": 1}')[
            "executionArn"
        ]
        for n in range(3)
    ]
    events.put_rule(Name="orders", EventPattern=json.dumps({"source": ["shop"]}))
    events.put_targets(Rule="orders", Targets=[{"Id": "sfn", "Arn": machine, "RoleArn": ROLE}])
    put = events.put_events(
        Entries=[{"Source": "shop", "DetailType": "order", "Detail": '{"total": 7}'}]
    )
    assert put["FailedEntryCount"] == 0
    hook = httpx.post(
        f"{base}/webhooks/gitlab",
        json=job_hook(9001, "pending"),
        headers={"X-Gitlab-Token": HOOK_TOKEN, "X-Gitlab-Event": "Job Hook"},
        timeout=10,
    )
    assert hook.status_code < 300, hook.text
    return {"machine": machine, "executions": executions, "event": put["Entries"][0]["EventId"]}


def session(base: str) -> str:
    token = httpx.post(f"{base}/auth/session", json={"key": SECRET}, timeout=10).json()["token"]
    return str(token)


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                for table in inspect(engine).get_table_names()
                if table != "alembic_version"
            }
    finally:
        engine.dispose()


def test_an_old_release_upgrades_with_everything_kept_and_running_on(
    release: Path, database: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "system.log"
    url = database.get("database_url") or f"sqlite:///{database['data_dir'] / 'smokehouse.db'}"

    # --- the old release: its API stores everything; no worker runs yet -----------------------
    port = free_port()
    old_env = cli_env(
        **database,
        http_port=port,
        access_keys=f"{KEY_ID}:{SECRET}:admin",
        gitlab_webhook_token=HOOK_TOKEN,
    )
    old_env["PYTHONPATH"] = str(release)
    old_api = started([sys.executable, "-m", "app.cli", "api"], old_env, log, release)
    try:
        wait_ready(f"http://127.0.0.1:{port}", old_api, log)
        seeded = seed_with_the_release(f"http://127.0.0.1:{port}")
    finally:
        stop(old_api)
    stored = subprocess.run(
        [sys.executable, "-c", STORE_READINGS], env=old_env, cwd=release, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    before = row_counts(url)
    assert before["executions"] == 3, before
    assert before["iot_readings"] == 120, before

    # --- this release: migrate, then nothing was dropped -------------------------------------
    migrated = run_cli("migrate", cwd=tmp_path, **database)
    assert migrated.returncode == 0, migrated.stderr
    assert f"database at revision {head_revision()}" in migrated.stdout
    after = row_counts(url)
    assert {t: n for t, n in after.items() if t in before} == before

    # --- the whole system on the upgraded data -----------------------------------------------
    port = free_port()
    env = cli_env(
        **database,
        http_port=port,
        embedded_mqtt_port=free_port(),
        access_keys=f"{KEY_ID}:{SECRET}:admin",
        gitlab_webhook_token=HOOK_TOKEN,
        bus_sweep_grace_seconds=2,
        workflow_sweep_grace_seconds=2,
    )
    base = f"http://127.0.0.1:{port}"
    system = started(smokehouse_argv("run"), env, log, tmp_path)
    try:
        wait_ready(base, system, log)
        sfn = client(base, "stepfunctions")

        def finished() -> bool:
            listed = sfn.list_executions(stateMachineArn=seeded["machine"])["executions"]
            return len(listed) == 4 and all(e["status"] == "SUCCEEDED" for e in listed)

        wait_for(finished, timeout=90, interval=0.5, what="the old executions to finish")
        for arn in seeded["executions"]:
            described = sfn.describe_execution(executionArn=arn)
            assert json.loads(described["output"]) == {"ok": True}
            assert json.loads(described["input"]) == {"n": 1}
        now = datetime.now(UTC)
        hour_ago, soon = (
            (now - timedelta(hours=1)).isoformat(),
            (now + timedelta(minutes=1)).isoformat(),
        )
        data = httpx.post(
            f"{base}/graphql",
            json={
                "query": '{ events(source: "shop") { id } ciJobs { jobId } devices { id } '
                f'readings(deviceId: "pit", start: "{hour_ago}", end: "{soon}") '
                "{ probeId points { ts } } }"
            },
            headers={"Authorization": f"Bearer {session(base)}"},
            timeout=10,
        ).json()
        assert "errors" not in data, data
        shown = data["data"]
        assert [e["id"] for e in shown["events"]] == [seeded["event"]]
        assert [j["jobId"] for j in shown["ciJobs"]] == [9001]
        assert [d["id"] for d in shown["devices"]] == ["pit"]
        assert sorted(s["probeId"] for s in shown["readings"]) == ["meat1", "pit"]
        assert all(len(s["points"]) >= 25 for s in shown["readings"]), shown["readings"]
    finally:
        stop(system)
