"""The ``smokehouse-device`` command: ``run``, ``simulate`` and ``check``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from smokehouse_device import __version__
from smokehouse_device.agent import Agent, Clock, Sampler, build_probe, simulated_probes
from smokehouse_device.buffer import BufferedReading, ReadingBuffer
from smokehouse_device.config import (
    BufferSettings,
    ConfigError,
    DeviceConfig,
    SimulatorSettings,
    load_config,
    parse_broker_url,
    parse_config,
)
from smokehouse_device.drivers import ds18b20
from smokehouse_device.publisher import MqttSettings
from smokehouse_device.readings import CalibratedProbe, Probe, Status

log = logging.getLogger("smokehouse_device")

EXIT_CONFIG = 2


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _install_signal_handlers(stop: threading.Event | Agent) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        if isinstance(stop, Agent):
            stop.stop()
        else:
            stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "smokehouse-device"


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _setup_logging(args.log_level or config.log_level)
    agent = Agent(config)
    _install_signal_handlers(agent)
    agent.run(max_samples=args.count)
    return 0


# -- simulate --------------------------------------------------------------------------------


def _simulate_config(args: argparse.Namespace) -> DeviceConfig:
    if args.config:
        config = load_config(args.config)
    else:
        config = parse_config({"device_id": args.device_id or "simulator", "simulator": True})
    sim = config.simulator
    simulator = SimulatorSettings(
        enabled=True,
        seed=sim.seed if args.seed is None else args.seed,
        time_scale=sim.time_scale if args.time_scale is None else args.time_scale,
        setpoint_c=sim.setpoint_c if args.setpoint is None else args.setpoint,
    )
    mqtt = config.mqtt
    if args.broker:
        host, port, tls, user, password = parse_broker_url(args.broker)
        mqtt = dataclasses.replace(
            mqtt,
            host=host,
            port=port,
            tls=tls,
            username=user or mqtt.username,
            password=password or mqtt.password,
        )
    device_id = args.device_id or config.device_id
    if args.device_id:
        mqtt = dataclasses.replace(mqtt, client_id=f"smokehouse-device-{device_id}")
    buffer = config.buffer
    if args.buffer:
        buffer = BufferSettings(Path(args.buffer), buffer.max_readings)
    elif not args.config:
        buffer = BufferSettings(_state_dir() / f"simulate-{device_id}.sqlite3")
    return dataclasses.replace(
        config,
        device_id=device_id,
        mqtt=mqtt,
        buffer=buffer,
        simulator=simulator,
        sample_interval_s=args.interval or config.sample_interval_s,
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    config = _simulate_config(args)
    _setup_logging(args.log_level or config.log_level)
    if args.stdout:
        return _simulate_stdout(config, args.count)
    log.info(
        "simulating a cook (seed %d, %gx real time) as %s → %s:%d",
        config.simulator.seed,
        config.simulator.time_scale,
        config.device_id,
        config.mqtt.host,
        config.mqtt.port,
    )
    agent = Agent(config)
    _install_signal_handlers(agent)
    agent.run(max_samples=args.count)
    return 0


def _simulate_stdout(config: DeviceConfig, count: int | None) -> int:
    clock = Clock(config.simulator.time_scale)
    buffer = ReadingBuffer(":memory:")
    stop = threading.Event()
    _install_signal_handlers(stop)

    def emit(row: BufferedReading) -> None:
        print(row.payload, flush=True)
        buffer.delete([row.row_id])

    sampler = Sampler(
        config.device_id, simulated_probes(config.simulator, clock), buffer, clock, emit
    )
    with contextlib.suppress(BrokenPipeError):
        sampler.run(config.sample_interval_s, stop, count)
    return 0


# -- check -----------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _setup_logging(args.log_level or "WARNING")
    probes: list[tuple[str, Probe | None, str]] = []
    if config.simulator.enabled:
        clock = Clock()
        probes = [(p.id, p, "simulator") for p in simulated_probes(config.simulator, clock)]
    for cfg in config.probes if not config.simulator.enabled else ():
        try:
            probes.append(
                (cfg.id, CalibratedProbe(build_probe(cfg), cfg.calibration_offset_c), cfg.driver)
            )
        except Exception as exc:
            probes.append((cfg.id, None, f"{cfg.driver}: cannot open: {exc}"))
    rows: list[dict[str, object]] = []
    worst_ok = True
    for probe_id, probe, driver in probes:
        if probe is None:
            rows.append({"id": probe_id, "driver": driver, "status": "error", "temp_c": None})
            worst_ok = False
            continue
        reading = probe.read()
        probe.close()
        worst_ok = worst_ok and reading.status is Status.OK
        rows.append(
            {
                "id": probe_id,
                "driver": driver,
                "status": reading.status.value,
                "temp_c": None if reading.temp_c is None else round(reading.temp_c, 2),
                "detail": reading.detail,
            }
        )
    if args.json:
        print(json.dumps({"device_id": config.device_id, "probes": rows}, indent=2))
    else:
        print(f"device {config.device_id}")
        for row in rows:
            temp = "—" if row["temp_c"] is None else f"{row['temp_c']:.2f} °C"
            detail = f"  ({row['detail']})" if row.get("detail") else ""
            print(f"  {row['id']:<16} {row['driver']:<10} {row['status']:<6} {temp}{detail}")
        w1_bases = {Path(c.params["base_path"]) for c in config.probes if c.driver == "ds18b20"}
        for base in sorted(w1_bases):
            found = ds18b20.discover(base)
            print(f"  1-Wire sensors under {base}: {', '.join(found) or 'none'}")
    return 0 if worst_ok else 1


# -- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smokehouse-device",
        description="Raspberry Pi BBQ thermometer: reads probes and publishes them over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="read the configured probes and publish them")
    run.add_argument("--config", "-c", required=True, type=Path, help="TOML config file")
    run.add_argument("--count", type=int, help=argparse.SUPPRESS)  # stop after N samples
    run.set_defaults(func=cmd_run)

    sim = sub.add_parser("simulate", help="publish a simulated cook (no hardware needed)")
    sim.add_argument("--config", "-c", type=Path, help="TOML config (its mqtt/buffer are used)")
    sim.add_argument("--broker", help="mqtt://host:port or mqtts://host:port")
    sim.add_argument("--device-id")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--time-scale", type=float, help="cook seconds per real second")
    sim.add_argument("--setpoint", type=float, help="pit setpoint °C (default 110)")
    sim.add_argument("--interval", type=float, help="seconds of cook time between samples")
    sim.add_argument("--buffer", help="offline buffer file")
    sim.add_argument("--count", type=int, help="stop after N samples")
    sim.add_argument("--stdout", action="store_true", help="print JSON lines, no MQTT")
    sim.set_defaults(func=cmd_simulate)

    check = sub.add_parser("check", help="read every probe once and print it")
    check.add_argument("--config", "-c", required=True, type=Path, help="TOML config file")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:  # e.g. a bad --broker URL
        print(f"smokehouse-device: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return code


__all__ = ["MqttSettings", "main"]
