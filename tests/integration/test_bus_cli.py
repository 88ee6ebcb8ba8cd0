"""``smokehouse rules …`` and ``smokehouse events …`` against SQLite and PostgreSQL.

In-process with Typer's CliRunner for speed (one case runs the real ``python -m app.cli`` in a
subprocess, so the mounting and the exit codes are proven end to end)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from app.bus.definitions import SHIPPED_RULES, load_definitions
from app.bus.models import Delivery, Event
from app.bus.service import put_rule, put_targets
from app.cli import cli
from app.config import Settings
from app.db import get_database
from tests.integration.cli import run_cli

pytestmark = pytest.mark.integration

ECHO = "arn:smokehouse:handler:echo"


@pytest.fixture
def invoke(
    settings_factory: Callable[..., Settings],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    settings_factory()  # a clean SMOKEHOUSE_* environment, cwd in tmp_path
    env = {
        "SMOKEHOUSE_DATABASE_URL": database_url,
        "SMOKEHOUSE_DATA_DIR": str(tmp_path / "data"),
        "SMOKEHOUSE_DEFINITIONS_DIR": str(tmp_path / "mine"),
        "SMOKEHOUSE_AUTO_MIGRATE": "false",  # the fixture migrated it
    }
    (tmp_path / "mine" / "rules").mkdir(parents=True)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The CLI points the root logger at its stderr, which CliRunner closes after each run.
    monkeypatch.setattr("app.cli_support.configure_logging", lambda *args: None)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args))

    return run


def test_rules_apply_list_and_bad_definitions(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    mine = tmp_path / "mine" / "rules" / "mine.yaml"
    mine.write_text(
        "rules:\n  - name: mine\n    bus: custom\n    event_pattern: {source: [me]}\n"
        f"    targets: [{{id: e, arn: '{ECHO}'}}]\n"
    )
    applied = invoke("rules", "apply")
    assert applied.exit_code == 0, applied.output
    assert "created   custom/mine" in applied.output
    assert "created   default/smokehouse-test-events" in applied.output
    assert "bus       custom created" in applied.output
    again = invoke("rules", "apply")
    assert again.exit_code == 0
    shipped_files = sorted(SHIPPED_RULES.glob("*.yaml"))
    shipped = len(load_definitions(shipped_files))
    assert again.output.strip().endswith(
        f"{len(shipped_files) + 1} files: 0 created, 0 updated, {shipped + 1} unchanged, 0 deleted"
    )

    listed = invoke("rules", "list").output.splitlines()
    assert listed[0].split() == ["RULE", "STATE", "TARGETS", "MANAGED", "BY"]
    assert listed[1].split() == ["custom/mine", "ENABLED", "e", str(mine.resolve())]
    assert [
        "default/smokehouse-test-events",
        "DISABLED",
        "log",
        "app/definitions/rules/examples.yaml",
    ] in [line.split() for line in listed]
    only_custom = invoke("rules", "list", "--bus", "custom").output.splitlines()
    assert len(only_custom) == 2
    unknown_bus = invoke("rules", "list", "--bus", "nope")
    assert unknown_bus.exit_code == 1
    assert unknown_bus.output.strip().startswith("smokehouse: error: ResourceNotFoundException")

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: broken\n    event_pattern: {source: nope}\n")
    failed = invoke("rules", "apply", str(bad))
    assert failed.exit_code == 1
    [line] = failed.output.strip().splitlines()  # one line, even for a multi-line reason
    assert line.startswith(f"smokehouse: error: {bad}: rule 'broken': Event pattern is not valid")
    missing = invoke("rules", "apply", str(tmp_path / "nothing.yaml"))
    assert missing.exit_code == 1
    assert "no such file or directory" in missing.output


def test_rules_test(invoke: Callable[..., Result], tmp_path: Path) -> None:
    event = json.dumps({"source": "smokehouse.test", "detail": {"n": 5}})
    pattern = tmp_path / "pattern.json"
    pattern.write_text('{"detail": {"n": [{"numeric": [">", 3]}]}}')

    matched = invoke("rules", "test", f"@{pattern}", event)
    assert (matched.exit_code, matched.output) == (0, "match\n")
    no_match = invoke("rules", "test", '{"source": ["other"]}', event)
    assert (no_match.exit_code, no_match.output) == (1, "no match\n")
    invalid = invoke("rules", "test", '{"source": "other"}', event)
    assert invalid.exit_code == 2
    assert invalid.output.startswith(
        'Event pattern is not valid. Reason: "source" must be an object or an array'
    )
    bad_event = invoke("rules", "test", '{"source": ["a"]}', "[1]")
    assert bad_event.exit_code == 2
    assert "event must be a JSON object" in bad_event.output


def test_events_put_stores_routes_and_enqueues(
    invoke: Callable[..., Result], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueued: list[list[str]] = []
    monkeypatch.setattr(
        "app.bus.outbox.enqueue_deliveries", lambda _settings, ids: enqueued.append(list(ids))
    )
    with get_database(database_url).session() as session:
        put_rule(session, name="r", event_pattern={"source": ["smokehouse.test"]})
        put_targets(session, None, "r", [{"Id": "e", "Arn": ECHO}])

    result = invoke(
        "events", "put", "--source", "smokehouse.test", "--detail-type", "T", "--detail", '{"a": 1}'
    )
    assert result.exit_code == 0, result.output
    event_id = result.output.strip()
    with get_database(database_url).session() as session:
        stored = session.get(Event, event_id)
        assert stored is not None
        assert stored.envelope["detail"] == {"a": 1}
        delivery_ids = list(
            session.scalars(select(Delivery.id).where(Delivery.event_id == event_id))
        )
    assert len(delivery_ids) == 1
    assert enqueued == [delivery_ids]  # after the commit: the rows were already there

    malformed = invoke("events", "put", "--source", "s", "--detail-type", "T", "--detail", "[1]")
    assert malformed.exit_code == 1
    assert malformed.output.strip() == "smokehouse: error: MalformedDetail: Detail is malformed."
    no_bus = invoke("events", "put", "--source", "s", "--detail-type", "T", "--bus", "nope")
    assert no_bus.exit_code == 1
    assert "ResourceNotFoundException: Event bus nope does not exist." in no_bus.output
    assert enqueued == [delivery_ids]


def test_the_real_command(tmp_path: Path) -> None:
    """Mounted on ``smokehouse``, migrating a fresh embedded data dir, with real exit codes."""
    data_dir = tmp_path / "data"
    applied = run_cli("rules", "apply", cwd=tmp_path, data_dir=data_dir, log_format="console")
    assert applied.returncode == 0, applied.stderr
    assert "created   default/smokehouse-test-events" in applied.stdout
    put = run_cli(
        "events", "put", "--source", "smokehouse.test", "--detail-type", "T",
        cwd=tmp_path, data_dir=data_dir, log_format="console",
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    assert len(put.stdout.strip()) == 36  # an event id; the example rule is disabled
    broken = run_cli("rules", "test", "{", "{}", cwd=tmp_path, data_dir=data_dir)
    assert broken.returncode == 2
    assert broken.stderr.startswith("Event pattern is not valid.")
