"""MAX31855 cold-junction-compensated K-type thermocouple converter (SPI, read-only).

The chip clocks out one 32-bit frame, MSB first (datasheet Table 2, "Memory Map"):

====== ==============================================================
D31-18 thermocouple temperature, 14-bit two's complement, 0.25 °C/LSB
D17    reserved
D16    fault: 1 when any of SCV, SCG, OC is set
D15-4  internal (cold-junction) temperature, 12-bit two's complement, 0.0625 °C/LSB
D3     reserved
D2     SCV: thermocouple shorted to VCC
D1     SCG: thermocouple shorted to GND
D0     OC: thermocouple open (no connection)
====== ==============================================================

OC → ``open``; SCG/SCV → ``short``; the fault bit alone → ``error``.

The chip assumes a linear 41.276 µV/°C; with ``nist_correction`` (the default) the reading is
corrected with the NIST ITS-90 type K polynomials (NIST Monograph 175), which matters at pit
temperatures (the linear value is ~2.8 °C low at 200 °C).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smokehouse_device.drivers.transport import SpiTransport
from smokehouse_device.readings import Reading

FAULT_BIT = 1 << 16
SCV_BIT = 1 << 2
SCG_BIT = 1 << 1
OC_BIT = 1 << 0
SPI_MODE = 0
MAX_SPEED_HZ = 5_000_000
K_TYPE_UV_PER_C = 41.276


@dataclass(frozen=True, slots=True)
class Max31855Frame:
    thermocouple_c: float
    internal_c: float
    fault: bool
    scv: bool
    scg: bool
    oc: bool


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def decode_frame(frame: bytes) -> Max31855Frame:
    """Decode the 4-byte frame (pure)."""
    if len(frame) != 4:
        raise ValueError(f"MAX31855 frame is 4 bytes, got {len(frame)}")
    raw = int.from_bytes(frame, "big")
    return Max31855Frame(
        thermocouple_c=_signed(raw >> 18, 14) * 0.25,
        internal_c=_signed((raw >> 4) & 0xFFF, 12) * 0.0625,
        fault=bool(raw & FAULT_BIT),
        scv=bool(raw & SCV_BIT),
        scg=bool(raw & SCG_BIT),
        oc=bool(raw & OC_BIT),
    )


# NIST ITS-90 type K reference functions (NIST Monograph 175 / ITS-90 Thermocouple Database).
# Forward: E(mV) = sum(c_i * t^i) [+ a0 * exp(a1 * (t - a2)^2) for t >= 0].
_K_FWD_NEG = (
    0.0,
    0.394501280250e-1,
    0.236223735980e-4,
    -0.328589067840e-6,
    -0.499048287770e-8,
    -0.675090591730e-10,
    -0.574103274280e-12,
    -0.310888728940e-14,
    -0.104516093650e-16,
    -0.198892668780e-19,
    -0.163226974860e-22,
)
_K_FWD_POS = (
    -0.176004136860e-1,
    0.389212049750e-1,
    0.185587700320e-4,
    -0.994575928740e-7,
    0.318409457190e-9,
    -0.560728448890e-12,
    0.560750590590e-15,
    -0.320207200030e-18,
    0.971511471520e-22,
    -0.121047212750e-25,
)
_K_FWD_A = (0.118597600000e0, -0.118343200000e-3, 0.126968600000e3)
# Inverse: t(°C) = sum(d_i * E^i), in three emf ranges.
_K_INV_NEG = (
    0.0,
    2.5173462e1,
    -1.1662878,
    -1.0833638,
    -8.9773540e-1,
    -3.7342377e-1,
    -8.6632643e-2,
    -1.0450598e-2,
    -5.1920577e-4,
)
_K_INV_0_500 = (
    0.0,
    2.508355e1,
    7.860106e-2,
    -2.503131e-1,
    8.315270e-2,
    -1.228034e-2,
    9.804036e-4,
    -4.413030e-5,
    1.057734e-6,
    -1.052755e-8,
)
_K_INV_500_1372 = (
    -1.318058e2,
    4.830222e1,
    -1.646031,
    5.464731e-2,
    -9.650715e-4,
    8.802193e-6,
    -3.110810e-8,
)


def _poly(coeffs: tuple[float, ...], x: float) -> float:
    result = 0.0
    for c in reversed(coeffs):
        result = result * x + c
    return result


def k_type_mv(temp_c: float) -> float:
    """Type K emf (mV) at ``temp_c`` with the reference junction at 0 °C."""
    if temp_c < 0:
        return _poly(_K_FWD_NEG, temp_c)
    a0, a1, a2 = _K_FWD_A
    return _poly(_K_FWD_POS, temp_c) + a0 * math.exp(a1 * (temp_c - a2) ** 2)


def k_type_temp(mv: float) -> float:
    """Temperature (°C) for a type K emf (mV), reference junction at 0 °C."""
    if mv < 0:
        return _poly(_K_INV_NEG, mv)
    if mv < 20.644:
        return _poly(_K_INV_0_500, mv)
    return _poly(_K_INV_500_1372, mv)


def nist_corrected(thermocouple_c: float, internal_c: float) -> float:
    """Undo the chip's linear approximation (Maxim application note / NIST ITS-90)."""
    measured_mv = (thermocouple_c - internal_c) * K_TYPE_UV_PER_C / 1000.0
    return k_type_temp(measured_mv + k_type_mv(internal_c))


def frame_to_reading(frame: bytes, *, nist_correction: bool = True) -> Reading:
    decoded = decode_frame(frame)
    if decoded.oc:
        return Reading.open("thermocouple open circuit (OC)")
    if decoded.scg or decoded.scv:
        which = "GND" if decoded.scg else "VCC"
        return Reading.short(f"thermocouple shorted to {which}")
    if decoded.fault:
        return Reading.error("fault bit set without a fault cause")
    if frame == b"\x00\x00\x00\x00" or frame == b"\xff\xff\xff\xff":
        # MISO stuck low/high: no chip answering (all-ones also sets every fault bit above).
        return Reading.error("no response from MAX31855 (MISO stuck)")
    if nist_correction:
        return Reading.ok(nist_corrected(decoded.thermocouple_c, decoded.internal_c))
    return Reading.ok(decoded.thermocouple_c)


class Max31855Probe:
    def __init__(
        self, probe_id: str, transport: SpiTransport, *, nist_correction: bool = True
    ) -> None:
        self._id = probe_id
        self._transport = transport
        self.nist_correction = nist_correction

    @property
    def id(self) -> str:
        return self._id

    def read(self) -> Reading:
        try:
            frame = self._transport.transfer(b"\x00\x00\x00\x00")
        except OSError as exc:
            return Reading.error(f"SPI transfer failed: {exc}")
        return frame_to_reading(frame, nist_correction=self.nist_correction)

    def close(self) -> None:
        self._transport.close()
