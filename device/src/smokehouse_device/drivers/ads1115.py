"""ADS1115 16-bit I²C ADC with NTC thermistor probes in voltage dividers.

Registers (datasheet §9.6): 0x00 conversion (16-bit two's complement), 0x01 config. Config bits:
OS[15] (write 1: start a single conversion; read 0: converting), MUX[14:12] (0b100-0b111 =
AIN0-AIN3 vs GND), PGA[11:9] (full-scale range), MODE[8] (1 = single-shot), DR[7:5] (data rate),
COMP_QUE[1:0] = 0b11 disables the comparator.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from smokehouse_device.drivers.thermistor import Divider, SteinhartHart
from smokehouse_device.drivers.transport import I2cTransport
from smokehouse_device.readings import Reading

REG_CONVERSION = 0x00
REG_CONFIG = 0x01
OS_BIT = 0x8000
MODE_SINGLE = 0x0100
COMP_DISABLE = 0x0003
DEFAULT_ADDRESS = 0x48

# Full-scale range (volts) → PGA bits.
PGA: dict[float, int] = {
    6.144: 0b000,
    4.096: 0b001,
    2.048: 0b010,
    1.024: 0b011,
    0.512: 0b100,
    0.256: 0b101,
}
# Samples per second → DR bits.
DATA_RATE: dict[int, int] = {8: 0, 16: 1, 32: 2, 64: 3, 128: 4, 250: 5, 475: 6, 860: 7}


def config_word(channel: int, fsr_v: float = 4.096, data_rate: int = 128) -> int:
    """Config register value that starts a single-shot conversion of AINx vs GND."""
    if channel not in (0, 1, 2, 3):
        raise ValueError("channel must be 0-3")
    if fsr_v not in PGA:
        raise ValueError(f"fsr_v must be one of {sorted(PGA)}")
    if data_rate not in DATA_RATE:
        raise ValueError(f"data_rate must be one of {sorted(DATA_RATE)}")
    return (
        OS_BIT
        | ((0b100 | channel) << 12)
        | (PGA[fsr_v] << 9)
        | MODE_SINGLE
        | (DATA_RATE[data_rate] << 5)
        | COMP_DISABLE
    )


def code_to_volts(code: int, fsr_v: float) -> float:
    """Conversion register (raw unsigned 16-bit) → volts."""
    signed = code - 0x10000 if code & 0x8000 else code
    return signed * fsr_v / 32768.0


class Ads1115ThermistorProbe:
    def __init__(
        self,
        probe_id: str,
        transport: I2cTransport,
        *,
        channel: int,
        coefficients: SteinhartHart,
        divider: Divider,
        supply_v: float = 3.3,
        address: int = DEFAULT_ADDRESS,
        fsr_v: float = 4.096,
        data_rate: int = 128,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._id = probe_id
        self._transport = transport
        self.channel = channel
        self.coefficients = coefficients
        self.divider = divider
        self.supply_v = supply_v
        self.address = address
        self.fsr_v = fsr_v
        self.data_rate = data_rate
        self._config = config_word(channel, fsr_v, data_rate)
        self._sleep = sleep

    @property
    def id(self) -> str:
        return self._id

    def read_volts(self) -> float:
        self._transport.write_register16(self.address, REG_CONFIG, self._config)
        conversion_s = 1.0 / self.data_rate
        self._sleep(conversion_s + 0.0005)
        for _ in range(10):
            if self._transport.read_register16(self.address, REG_CONFIG) & OS_BIT:
                break
            self._sleep(conversion_s)
        else:
            raise TimeoutError("ADS1115 conversion did not complete")
        return code_to_volts(
            self._transport.read_register16(self.address, REG_CONVERSION), self.fsr_v
        )

    def read(self) -> Reading:
        try:
            volts = self.read_volts()
        except (OSError, TimeoutError) as exc:
            return Reading.error(f"ADS1115: {exc}")
        return self.divider.to_reading(volts / self.supply_v, self.coefficients)

    def close(self) -> None:
        self._transport.close()
