"""Wiring: probes from config, the sampling loop, and the run/stop lifecycle."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smokehouse_device.buffer import BufferedReading, ReadingBuffer
from smokehouse_device.config import DeviceConfig, ProbeConfig, SimulatorSettings
from smokehouse_device.drivers.ads1115 import Ads1115ThermistorProbe
from smokehouse_device.drivers.ds18b20 import Ds18b20Probe
from smokehouse_device.drivers.max31855 import SPI_MODE as MAX31855_MODE
from smokehouse_device.drivers.max31855 import Max31855Probe
from smokehouse_device.drivers.max31865 import SPI_MODE as MAX31865_MODE
from smokehouse_device.drivers.max31865 import Max31865Probe
from smokehouse_device.drivers.thermistor import PRESETS, Divider, SteinhartHart
from smokehouse_device.drivers.transport import Smbus2Transport, SpidevTransport
from smokehouse_device.publisher import MqttPublisher
from smokehouse_device.readings import (
    CalibratedProbe,
    Probe,
    Reading,
    build_payload,
    encode_payload,
)
from smokehouse_device.simulator import CookPlan, CookSimulator, SimulatedProbe

log = logging.getLogger(__name__)


class Clock:
    """Wall clock for ``ts`` and cook time for the simulator, optionally sped up.

    With ``scale`` > 1 (demos) the clock runs faster than real time: ``ts`` advances ``scale``
    seconds per real second from the moment the clock started, and the sampling loop sleeps
    ``interval / scale`` real seconds between samples."""

    def __init__(
        self,
        scale: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.scale = scale
        self._monotonic = monotonic
        self._wall = wall
        self._start_mono = monotonic()
        self._start_wall = wall()

    def elapsed(self) -> float:
        """Seconds of (scaled) time since the clock started."""
        return (self._monotonic() - self._start_mono) * self.scale

    def now(self) -> datetime:
        if self.scale == 1.0:
            return self._wall()
        return self._start_wall + timedelta(seconds=self.elapsed())


def build_probe(cfg: ProbeConfig) -> Probe:
    """A driver instance for one configured probe (hardware modules are imported lazily)."""
    p = cfg.params
    if cfg.driver == "ds18b20":
        return Ds18b20Probe(cfg.id, p["sensor"], base_path=Path(p["base_path"]), source=p["source"])
    if cfg.driver == "max31855":
        spi = SpidevTransport(
            p["bus"], p["device"], mode=MAX31855_MODE, max_speed_hz=p["max_speed_hz"]
        )
        return Max31855Probe(cfg.id, spi, nist_correction=p["nist_correction"])
    if cfg.driver == "max31865":
        spi = SpidevTransport(
            p["bus"], p["device"], mode=MAX31865_MODE, max_speed_hz=p["max_speed_hz"]
        )
        return Max31865Probe(
            cfg.id,
            spi,
            rtd=p["rtd"],
            r_ref=p["r_ref"],
            wires=p["wires"],
            filter_hz=p["filter_hz"],
        )
    if cfg.driver == "ads1115":
        if p.get("preset"):
            preset = PRESETS[p["preset"]]
            coefficients = preset.coefficients
            default_resistor = preset.recommended_resistor_ohm
        else:
            coefficients = SteinhartHart(*p["coefficients"])
            default_resistor = 10_000.0
        divider = Divider(
            series_resistor_ohm=p["series_resistor_ohm"] or default_resistor,
            placement=p["placement"],
            open_ratio=p["open_ratio"],
            short_ratio=p["short_ratio"],
        )
        return Ads1115ThermistorProbe(
            cfg.id,
            Smbus2Transport.shared(p["bus"]),
            channel=p["channel"],
            coefficients=coefficients,
            divider=divider,
            supply_v=p["supply_v"],
            address=p["address"],
            fsr_v=p["fsr_v"],
            data_rate=p["data_rate"],
        )
    raise ValueError(f"unknown driver {cfg.driver!r}")


def build_probes(config: DeviceConfig, clock: Clock) -> list[CalibratedProbe]:
    if config.simulator.enabled:
        return simulated_probes(config.simulator, clock)
    return [CalibratedProbe(build_probe(p), p.calibration_offset_c) for p in config.probes]


def simulated_probes(settings: SimulatorSettings, clock: Clock) -> list[CalibratedProbe]:
    sim = CookSimulator(CookPlan(setpoint_c=settings.setpoint_c), seed=settings.seed)
    return [
        CalibratedProbe(SimulatedProbe(sim, probe_id, clock.elapsed))
        for probe_id in sim.plan.probe_ids
    ]


def read_all(probes: Sequence[Probe]) -> list[tuple[str, Reading]]:
    return [(probe.id, probe.read()) for probe in probes]


@dataclass
class Sampler:
    """Reads every probe, stamps the reading, appends it to the buffer (which assigns ``seq``)."""

    device_id: str
    probes: Sequence[Probe]
    buffer: ReadingBuffer
    clock: Clock
    on_sample: Callable[[BufferedReading], None] | None = None

    def sample_once(self) -> BufferedReading:
        readings = read_all(self.probes)
        ts = self.clock.now()
        row = self.buffer.append(
            lambda seq: encode_payload(build_payload(self.device_id, seq, ts, readings))
        )
        if self.on_sample is not None:
            self.on_sample(row)
        return row

    def run(self, interval_s: float, stop: threading.Event, max_samples: int | None = None) -> int:
        """Sample every ``interval_s`` of clock time until ``stop`` is set. Returns the count."""
        period = interval_s / self.clock.scale
        next_at = time.monotonic()
        count = 0
        while not stop.is_set():
            try:
                self.sample_once()
            except Exception:
                log.exception("sampling failed")  # e.g. disk full; keep trying
            count += 1
            if max_samples is not None and count >= max_samples:
                break
            next_at += period
            delay = next_at - time.monotonic()
            if delay < -period:
                # Fell behind (slow probes, suspended machine): don't burst to catch up.
                next_at = time.monotonic()
                delay = 0.0
            stop.wait(max(0.0, delay))
        return count


class Agent:
    """The whole device: probes → buffer → MQTT. ``run`` blocks until ``stop`` is called."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        probes: Sequence[Probe] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or Clock(config.simulator.time_scale if config.simulator.enabled else 1)
        self.probes = list(probes) if probes is not None else build_probes(config, self.clock)
        self.buffer = ReadingBuffer(config.buffer.path, config.buffer.max_readings)
        self.publisher = MqttPublisher(config.mqtt, config.device_id, self.buffer)
        self.sampler = Sampler(
            config.device_id,
            self.probes,
            self.buffer,
            self.clock,
            on_sample=lambda _row: self.publisher.notify(),
        )
        self._stop = threading.Event()

    def run(self, max_samples: int | None = None, flush_timeout_s: float = 10.0) -> None:
        stats = self.buffer.stats()
        log.info(
            "device %s: %d probes, %d readings waiting in %s, next seq %d",
            self.config.device_id,
            len(self.probes),
            stats.pending,
            self.config.buffer.path,
            stats.next_seq,
        )
        self.publisher.start()
        try:
            self.sampler.run(self.config.sample_interval_s, self._stop, max_samples)
            if max_samples is not None and not self._stop.is_set():
                # A bounded run (demos, scripts): give the backlog a chance to go out first.
                self.publisher.flush(self._stop, timeout=flush_timeout_s)
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Thread- and signal-safe: ask ``run`` to return."""
        self._stop.set()

    def shutdown(self) -> None:
        self.publisher.stop()
        self.buffer.close()
        for probe in self.probes:
            try:
                probe.close()
            except Exception:
                log.exception("closing probe %s", probe.id)
