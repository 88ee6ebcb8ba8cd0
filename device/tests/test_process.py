"""The real command in a subprocess: LWT on an unclean death, offline + clean buffer on SIGTERM."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from device_harness import Broker, Collector, wait_until

pytestmark = pytest.mark.integration


def simulate(broker: Broker, device_id: str, buffer: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smokehouse_device",
            "simulate",
            "--broker",
            broker.url,
            "--device-id",
            device_id,
            "--buffer",
            str(buffer),
            "--interval",
            "60",
            "--time-scale",
            "600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_lwt_offline_when_the_process_is_killed(
    tmp_path: Path, broker: Broker, collectors: Callable[..., Collector]
) -> None:
    watcher = collectors(broker.port, "smokehouse/lwt1/#")
    proc = simulate(broker, "lwt1", tmp_path / "buf.sqlite3")
    try:
        assert wait_until(lambda: ("online", False) in watcher.statuses(), 15), proc
        assert wait_until(lambda: len(watcher.telemetry()) >= 3, 10)
        proc.kill()  # SIGKILL: no DISCONNECT, no "offline" from us: only the broker's LWT
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_until(lambda: watcher.statuses()[-1][0] == "offline", 10), watcher.statuses()
    # The will is retained: a dashboard connecting later sees the device offline.
    late = collectors(broker.port, "smokehouse/lwt1/status")
    assert wait_until(lambda: late.statuses() == [("offline", True)], 5), late.statuses()
    # The simulated readings had the contract shape.
    payload = watcher.telemetry()[0]
    assert [p["id"] for p in payload["probes"]] == ["pit", "meat1", "meat2"]


def test_sigterm_publishes_offline_and_closes_the_buffer_cleanly(
    tmp_path: Path, broker: Broker, collectors: Callable[..., Collector]
) -> None:
    watcher = collectors(broker.port, "smokehouse/term1/#")
    path = tmp_path / "buf.sqlite3"
    proc = simulate(broker, "term1", path)
    try:
        assert wait_until(lambda: len(watcher.telemetry()) >= 3, 15)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_until(lambda: watcher.statuses()[-1] == ("offline", False), 5)
    conn = sqlite3.connect(path)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    pending = conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    conn.close()
    assert meta["clean_shutdown"] == 1
    # Every reading taken was acknowledged before the exit, so nothing is left to replay.
    assert pending == 0
    assert set(range(1, meta["next_seq"])) == {p["seq"] for p in watcher.telemetry()}


def test_simulate_stdout_prints_contract_json(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "smokehouse_device",
            "simulate",
            "--stdout",
            "--count",
            "4",
            "--interval",
            "60",
            "--time-scale",
            "6000",
            "--seed",
            "3",
            "--device-id",
            "demo",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [p["seq"] for p in lines] == [1, 2, 3, 4]
    assert {p["device_id"] for p in lines} == {"demo"}
    assert all(len(p["probes"]) == 3 for p in lines)
