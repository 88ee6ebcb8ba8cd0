"""Shared fixtures: settings on a temp data dir, migrated databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import app.wiring  # noqa: F401  (the test process is an entry point: fill the registries)
from app.config import Settings, load_settings
from app.heap import SKIP_VARIABLE
from tests.services import migrated_sqlite, postgres_database, service_port

# One pytest process starts hundreds of apps: gc.freeze() on each would keep every earlier test's
# garbage forever (app/heap.py). Set before any app starts; subprocesses inherit it.
os.environ[SKIP_VARIABLE] = "1"

#: Tests that drive real processes, brokers and a browser on a shared 2-core CI machine.
REAL_SERVICE_TESTS = ("tests/integration/", "tests/e2e/")


#: Under pytest-xdist (``--dist loadgroup``, see the Makefile) each group runs on one worker, in
#: order: tests on Redis pub/sub channels with fixed names (channels are global, not per Redis
#: database) or on RabbitMQ's fixed queues; the real-process scaling tests, whose timings assume
#: they are not racing; the browser and Podman's containers (fixed runner names, one storage)
#: together -- every container Podman starts or stops adds or removes a veth interface, and
#: Chromium answers a host network change by failing the requests it has in flight
#: (``net::ERR_NETWORK_CHANGED``, seen on a console test in CI).
XDIST_GROUPS = {
    "tests/e2e/": "host-network",
    "tests/integration/iot/test_graphql_live.py": "redis-pubsub",
    "tests/integration/test_graphql_limits.py": "redis-pubsub",
    "tests/integration/test_celery_worker.py": "rabbitmq",
    "tests/integration/scaling/test_process_backend.py": "scaling-processes",
    "tests/integration/scaling/test_docker_backend.py": "host-network",
    "tests/integration/runners/test_containers.py": "host-network",
    "tests/integration/runners/test_container_lifecycle.py": "host-network",
    "tests/integration/scaling/test_kubernetes_backend.py": "scaling-processes",
    "tests/integration/scaling/test_worker_registry.py": "scaling-processes",
    "tests/integration/scaling/test_autoscaler.py": "scaling-processes",
}
#: Tests using one of these session-scoped stacks share a worker, so it is built once, not once
#: per worker (the bus API's live server, the workflow stacks with their worker processes).
XDIST_GROUP_FIXTURES = {"live": "bus-live", "wf": "workflows-stack"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One rerun for tests against real services (pytest-rerunfailures): a timing hiccup on a
    loaded machine must not fail the build, while a real regression fails twice. Every rerun is
    reported in the summary (``R``), so a flaky test is visible, not hidden. Also the
    ``xdist_group`` of the tests in :data:`XDIST_GROUPS` and :data:`XDIST_GROUP_FIXTURES`."""
    root = config.rootpath
    for item in items:
        where = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        if where.startswith(REAL_SERVICE_TESTS) and item.get_closest_marker("flaky") is None:
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
        group = next((g for prefix, g in XDIST_GROUPS.items() if where.startswith(prefix)), None)
        fixtures = getattr(item, "fixturenames", ())
        group = next((g for f, g in XDIST_GROUP_FIXTURES.items() if f in fixtures), group)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``--dist loadgroup`` a grouped test's id must carry its group (``…@podman``), or
    xdist schedules the group's tests side by side and they race for one Podman store, one
    RabbitMQ vhost, one browser: refuse to run rather than fail at random (pytest 9.2 stopped
    reading the ``_nodeid`` that pytest-xdist 3.8 sets, which is why pytest is capped)."""
    if not getattr(session.config.option, "loadgroup", False):  # set in xdist workers only
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"--dist loadgroup is not in effect for {item.nodeid}: xdist_group is ignored"
            )


#: The first, failed attempt of every test that was rerun: printed at the end of the run, so a
#: flaky test can be fixed at its cause instead of hiding behind its rerun.
_RERUN_REPORTS: list[pytest.TestReport] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.outcome == "rerun":  # set by pytest-rerunfailures; under xdist, on the controller
        _RERUN_REPORTS.append(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for report in _RERUN_REPORTS:
        terminalreporter.write_sep("_", f"first attempt of {report.nodeid} (rerun)")
        terminalreporter.write_line(report.longreprtext)
        for name, content in report.sections:
            if content.strip():
                terminalreporter.write_sep("-", name)
                terminalreporter.write_line(content[-4000:])


#: The secret store's key for production-like test settings (embedded ones generate their own).
TEST_SECRET_KEY = "3q0ljM1H_0s8Xz7Oc1Zq8kEo2N8Ql0m8M2Q1w3o6Xtk="


@pytest.fixture
def settings_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """Build Settings isolated from the developer's environment and .env file."""
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
            monkeypatch.delenv(name)

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "http_port": service_port(),
            "embedded_mqtt_port": service_port(),
            "log_format": "console",
        }
        values.update(overrides)
        if str(values.get("database_url") or "").startswith("postgresql"):
            values.setdefault("secret_key", TEST_SECRET_KEY)  # production needs one given
        return load_settings(**values)

    return make


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind: the same tests run on both. Each test gets its
    own copy of a template migrated once per process (tests/services.py)."""
    if request.param == "sqlite":
        yield migrated_sqlite(tmp_path / "test.db")
        return
    with postgres_database(migrated=True) as url:
        yield url
