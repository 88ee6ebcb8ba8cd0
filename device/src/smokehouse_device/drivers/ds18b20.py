"""DS18B20 over the Linux 1-Wire sysfs interface (``w1-gpio`` + ``w1_therm``).

Each sensor shows up as ``<base>/28-<serial>/``. Two files can be read:

* ``w1_slave`` (every kernel): two lines, the scratchpad with the CRC verdict and the value::

      72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
      72 01 4b 46 7f ff 0e 10 57 t=23125

* ``temperature`` (kernel ≥ 5.x): just the millidegrees, ``23125``.

Rejected and retried once before giving up with ``error``: a CRC ``NO`` and the 85.000 °C
power-on-reset value (the scratchpad default, seen when a conversion did not complete, e.g. on a
brown-out). A missing sensor directory means the sensor is gone from the bus: ``open``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from smokehouse_device.readings import Reading

log = logging.getLogger(__name__)

DEFAULT_BASE_PATH = Path("/sys/bus/w1/devices")
POWER_ON_RESET_MILLI_C = 85000
_SENSOR_RE = re.compile(r"^28-[0-9a-f]{12}$")
_T_RE = re.compile(r"t=(-?\d+)")

Source = Literal["auto", "w1_slave", "temperature"]


class Ds18b20Error(ValueError):
    """The sysfs text could not be turned into a temperature."""


@dataclass(frozen=True, slots=True)
class Parsed:
    milli_c: int


def parse_w1_slave(text: str) -> Parsed:
    """Parse the two-line ``w1_slave`` file. Raises :class:`Ds18b20Error` on CRC ``NO`` or junk."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        raise Ds18b20Error(f"expected two lines, got {len(lines)}")
    crc_line, data_line = lines[0], lines[1]
    if not crc_line.endswith("YES"):
        if crc_line.endswith("NO"):
            raise Ds18b20Error("CRC check failed (crc=... NO)")
        raise Ds18b20Error(f"unrecognised CRC line: {crc_line!r}")
    match = _T_RE.search(data_line)
    if match is None:
        raise Ds18b20Error(f"no t= value in {data_line!r}")
    return Parsed(int(match.group(1)))


def parse_temperature_file(text: str) -> Parsed:
    value = text.strip()
    try:
        return Parsed(int(value))
    except ValueError:
        raise Ds18b20Error(f"not an integer: {value!r}") from None


def discover(base_path: Path = DEFAULT_BASE_PATH) -> list[str]:
    """Sensor ids (``28-…``) present on the bus, sorted."""
    try:
        return sorted(p.name for p in base_path.iterdir() if _SENSOR_RE.match(p.name))
    except OSError:
        return []


def valid_sensor_id(sensor: str) -> bool:
    return bool(_SENSOR_RE.match(sensor))


class Ds18b20Probe:
    def __init__(
        self,
        probe_id: str,
        sensor: str,
        *,
        base_path: Path = DEFAULT_BASE_PATH,
        source: Source = "auto",
        retries: int = 1,
        reader: Callable[[Path], str] = Path.read_text,
    ) -> None:
        self._id = probe_id
        self.sensor = sensor
        self.base_path = Path(base_path)
        self.source: Source = source
        self.retries = retries
        self._reader = reader

    @property
    def id(self) -> str:
        return self._id

    def _read_once(self) -> Parsed:
        sensor_dir = self.base_path / self.sensor
        use_w1_slave = self.source == "w1_slave" or (
            self.source == "auto" and (sensor_dir / "w1_slave").exists()
        )
        if use_w1_slave:
            parsed = parse_w1_slave(self._reader(sensor_dir / "w1_slave"))
        else:
            parsed = parse_temperature_file(self._reader(sensor_dir / "temperature"))
        if parsed.milli_c == POWER_ON_RESET_MILLI_C:
            raise Ds18b20Error("85.000 °C power-on-reset value (conversion did not complete)")
        return parsed

    def read(self) -> Reading:
        if not (self.base_path / self.sensor).is_dir():
            return Reading.open(f"sensor {self.sensor} not on the 1-Wire bus")
        last_problem = ""
        for attempt in range(self.retries + 1):
            try:
                return Reading.ok(self._read_once().milli_c / 1000.0)
            except FileNotFoundError:
                return Reading.open(f"sensor {self.sensor} disappeared from the 1-Wire bus")
            except (Ds18b20Error, OSError) as exc:
                last_problem = str(exc)
                log.debug("ds18b20 %s attempt %d: %s", self.sensor, attempt + 1, exc)
        return Reading.error(last_problem)

    def close(self) -> None:
        pass
