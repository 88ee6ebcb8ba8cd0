"""MAX31865 RTD-to-digital converter for PT100 / PT1000 (SPI mode 1 or 3).

Registers (datasheet Table 1): 0x00 configuration, 0x01/0x02 RTD MSB/LSB, 0x03-0x06 high/low
fault thresholds, 0x07 fault status. Reads use the address as is, writes set bit 7 (0x80|addr).

Configuration register bits: D7 V_BIAS on, D6 conversion mode auto, D5 1-shot, D4 3-wire,
D3-D2 fault detection cycle, D1 fault status clear, D0 50 Hz filter (0 = 60 Hz).

RTD data: 15-bit ratio code in MSB:LSB[7:1], LSB bit 0 = fault flag;
R_rtd = code x R_ref / 2^15. Temperature from the Callendar-Van Dusen equation (IEC 60751):
R(T) = R0 (1 + A·T + B·T² + C·(T - 100)·T³), C = 0 for T ≥ 0.

Fault status register bits (datasheet Table 7): D7 RTD high threshold, D6 RTD low threshold,
D5 REFIN- > 0.85 x V_BIAS, D4 REFIN- < 0.85 x V_BIAS (FORCE- open), D3 RTDIN- < 0.85 x V_BIAS
(FORCE- open), D2 over/under-voltage. Mapped: high threshold and the REFIN/RTDIN (open wire)
faults → ``open``; low threshold → ``short``; over/under-voltage → ``error``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from smokehouse_device.drivers.transport import SpiTransport
from smokehouse_device.readings import Reading

REG_CONFIG = 0x00
REG_RTD_MSB = 0x01
REG_HIGH_FAULT_MSB = 0x03
REG_LOW_FAULT_MSB = 0x05
REG_FAULT_STATUS = 0x07
WRITE = 0x80

CFG_VBIAS = 0x80
CFG_AUTO = 0x40
CFG_ONE_SHOT = 0x20
CFG_3WIRE = 0x10
CFG_FAULT_CLEAR = 0x02
CFG_FILTER_50HZ = 0x01

FAULT_HIGH_THRESHOLD = 0x80
FAULT_LOW_THRESHOLD = 0x40
FAULT_REFIN_HIGH = 0x20
FAULT_REFIN_LOW = 0x10
FAULT_RTDIN_LOW = 0x08
FAULT_OVUV = 0x04

SPI_MODE = 1
MAX_SPEED_HZ = 1_000_000

# IEC 60751 Callendar-Van Dusen coefficients for platinum RTDs (alpha = 0.00385).
CVD_A = 3.9083e-3
CVD_B = -5.775e-7
CVD_C = -4.183e-12

FULL_SCALE = 1 << 15


def config_byte(*, wires: int, filter_hz: int, auto: bool = True, clear_fault: bool = False) -> int:
    if wires not in (2, 3, 4):
        raise ValueError("wires must be 2, 3 or 4")
    if filter_hz not in (50, 60):
        raise ValueError("filter_hz must be 50 or 60")
    value = CFG_VBIAS
    if auto:
        value |= CFG_AUTO
    if wires == 3:
        value |= CFG_3WIRE
    if filter_hz == 50:
        value |= CFG_FILTER_50HZ
    if clear_fault:
        value |= CFG_FAULT_CLEAR
    return value


@dataclass(frozen=True, slots=True)
class RtdSample:
    code: int
    fault: bool


def decode_rtd(msb: int, lsb: int) -> RtdSample:
    """Decode the RTD MSB/LSB register pair (pure)."""
    word = ((msb & 0xFF) << 8) | (lsb & 0xFF)
    return RtdSample(code=word >> 1, fault=bool(word & 1))


def resistance(code: int, r_ref: float) -> float:
    return code * r_ref / FULL_SCALE


def cvd_resistance(temp_c: float, r0: float) -> float:
    """Forward Callendar-Van Dusen: R(T)."""
    c = CVD_C if temp_c < 0 else 0.0
    return r0 * (1 + CVD_A * temp_c + CVD_B * temp_c**2 + c * (temp_c - 100) * temp_c**3)


def cvd_temperature(r: float, r0: float) -> float:
    """Inverse Callendar-Van Dusen: T(R). Closed form for T ≥ 0, Newton's method below 0 °C."""
    ratio = r / r0
    t = (-CVD_A + math.sqrt(CVD_A**2 - 4 * CVD_B * (1 - ratio))) / (2 * CVD_B)
    if ratio >= 1.0:
        return t
    for _ in range(20):
        f = cvd_resistance(t, r0) - r
        df = r0 * (CVD_A + 2 * CVD_B * t + CVD_C * (4 * t**3 - 300 * t**2))
        step = f / df
        t -= step
        if abs(step) < 1e-9:
            break
    return t


def classify_fault(status: int) -> Reading:
    if status & FAULT_LOW_THRESHOLD:
        return Reading.short("RTD below low threshold (shorted RTD)")
    if status & FAULT_HIGH_THRESHOLD:
        return Reading.open("RTD above high threshold (open RTD)")
    if status & (FAULT_REFIN_HIGH | FAULT_REFIN_LOW | FAULT_RTDIN_LOW):
        return Reading.open(f"open wire (fault status 0x{status:02x})")
    if status & FAULT_OVUV:
        return Reading.error("over/under-voltage fault")
    return Reading.error(f"fault flag set, fault status 0x{status:02x}")


# Sanity limits on the code itself, independent of the chip's threshold registers.
OPEN_CODE = FULL_SCALE - 16  # ratio ≥ 0.9995: the RTD input floats to REFIN+
SHORT_RATIO_OF_R0 = 0.18  # below ≈ -200 °C: a short, not a temperature


def sample_to_reading(sample: RtdSample, *, fault_status: int, r_ref: float, r0: float) -> Reading:
    if sample.fault or fault_status:
        return classify_fault(fault_status)
    if sample.code >= OPEN_CODE:
        return Reading.open("RTD reads full scale (open)")
    r = resistance(sample.code, r_ref)
    if r < SHORT_RATIO_OF_R0 * r0:
        return Reading.short(f"RTD resistance {r:.2f} Ω is a short")
    return Reading.ok(cvd_temperature(r, r0))


def threshold_code(r: float, r_ref: float) -> int:
    """Threshold register value (15-bit code left-aligned) for a resistance."""
    code = max(0, min(FULL_SCALE - 1, round(r * FULL_SCALE / r_ref)))
    return code << 1


class Max31865Probe:
    def __init__(
        self,
        probe_id: str,
        transport: SpiTransport,
        *,
        rtd: str = "pt100",
        r_ref: float | None = None,
        wires: int = 3,
        filter_hz: int = 50,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rtd not in ("pt100", "pt1000"):
            raise ValueError("rtd must be 'pt100' or 'pt1000'")
        self._id = probe_id
        self._transport = transport
        self.r0 = 100.0 if rtd == "pt100" else 1000.0
        # Adafruit's breakout ships 430 Ω (PT100) / 4300 Ω (PT1000) reference resistors.
        self.r_ref = r_ref if r_ref is not None else (430.0 if rtd == "pt100" else 4300.0)
        self.wires = wires
        self.filter_hz = filter_hz
        self._sleep = sleep
        self._configured = False

    @property
    def id(self) -> str:
        return self._id

    def _write(self, register: int, *values: int) -> None:
        self._transport.transfer(bytes([WRITE | register, *values]))

    def _read(self, register: int, count: int) -> bytes:
        return self._transport.transfer(bytes([register] + [0] * count))[1:]

    def configure(self) -> None:
        high = threshold_code(self.r_ref * OPEN_CODE / FULL_SCALE, self.r_ref)
        low = threshold_code(SHORT_RATIO_OF_R0 * self.r0, self.r_ref)
        self._write(REG_HIGH_FAULT_MSB, high >> 8, high & 0xFF, low >> 8, low & 0xFF)
        self._write(
            REG_CONFIG, config_byte(wires=self.wires, filter_hz=self.filter_hz, clear_fault=True)
        )
        # First automatic conversion completes after ~63 ms (50 Hz filter).
        self._sleep(0.07)
        self._configured = True

    def read(self) -> Reading:
        try:
            if not self._configured:
                self.configure()
            msb, lsb = self._read(REG_RTD_MSB, 2)
            sample = decode_rtd(msb, lsb)
            status = 0
            if sample.fault:
                status = self._read(REG_FAULT_STATUS, 1)[0]
                self._write(
                    REG_CONFIG,
                    config_byte(wires=self.wires, filter_hz=self.filter_hz, clear_fault=True),
                )
        except OSError as exc:
            self._configured = False
            return Reading.error(f"SPI transfer failed: {exc}")
        return sample_to_reading(sample, fault_status=status, r_ref=self.r_ref, r0=self.r0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._write(REG_CONFIG, 0x00)  # bias off
        self._transport.close()
