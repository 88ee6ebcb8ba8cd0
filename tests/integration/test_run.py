"""``smokehouse run``: the whole embedded system from one command, ready fast, gone on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.cli import cli_env, smokehouse_argv
from tests.services import RUN_READY_SECONDS, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def processes_in_session(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After ")": state, ppid, pgrp, session, ...; zombies are already gone for our purpose.
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def processes_with_data_dir(data_dir: Path) -> list[int]:
    """Every process started for this run, whatever its session (the autoscaler's workers have
    their own): all of them inherit SMOKEHOUSE_DATA_DIR."""
    marker = f"SMOKEHOUSE_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.append(int(entry.name))
    return found


def test_run_starts_everything_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    http_port = free_port()
    env = cli_env(data_dir=tmp_path / "data", http_port=http_port, embedded_mqtt_port=free_port())
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        smokehouse_argv("run"), env=env, stdout=log, stderr=log, start_new_session=True
    )
    base = f"http://127.0.0.1:{http_port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, RUN_READY_SECONDS, interval=0.2, what="/readyz to turn 200")

        # The generated admin key works, and the scheduler's first ping reaches a worker.
        key = (tmp_path / "data" / "access-key").read_text().split(":")[1]
        query = {"query": "{ system { mode lastWorkerPing } }"}

        def pinged() -> bool:
            login = httpx.post(f"{base}/auth/session", json={"key": key}).json()
            answer = httpx.post(
                f"{base}/graphql", json=query, headers={"Authorization": f"Bearer {login['token']}"}
            )
            return answer.json()["data"]["system"]["lastWorkerPing"] is not None

        wait_for(pinged, timeout=30, interval=0.5, what="a worker to process the scheduler's ping")
        assert len(processes_in_session(process.pid)) >= 5  # run, api, mqtt, autoscaler, beat
        # The ping's worker was started by the autoscaler (in a session of its own).
        assert len(processes_with_data_dir(tmp_path / "data")) > len(
            processes_in_session(process.pid)
        )
        # Ctrl-C once the banner is out, as a person would: run prints it when its own poll of
        # /readyz answers, which can come after ours (and, with workers forked in a blink,
        # after the ping too).
        wait_for(
            lambda: "Ctrl-C stops everything." in (tmp_path / "run.log").read_text(),
            30,
            what="run's banner",
        )
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = process.wait(timeout=40)
    banner = (tmp_path / "run.log").read_text()
    assert f"HTTP      http://127.0.0.1:{http_port}" in banner
    assert "API key" in banner
    assert code == 0
    deadline = time.monotonic() + 5
    while processes_in_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_in_session(process.pid) == [], "children left behind after Ctrl-C"
    assert processes_with_data_dir(tmp_path / "data") == [], "workers left behind after Ctrl-C"
    assert os.getsid(0) != process.pid
