"""MAX31855 frames built from the datasheet's Table 4 / Table 5 bit patterns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smokehouse_device.drivers.max31855 import (
    K_TYPE_UV_PER_C,
    Max31855Probe,
    decode_frame,
    frame_to_reading,
    k_type_mv,
    k_type_temp,
    nist_corrected,
)
from smokehouse_device.readings import Status

# Datasheet "Thermocouple Temperature Data Format" (14-bit, D31..D18).
THERMOCOUPLE_ROWS = [
    (1600.00, "0110 0100 0000 00"),
    (1000.00, "0011 1110 1000 00"),
    (100.75, "0000 0110 0100 11"),
    (25.00, "0000 0001 1001 00"),
    (0.00, "0000 0000 0000 00"),
    (-0.25, "1111 1111 1111 11"),
    (-1.00, "1111 1111 1111 00"),
    (-250.00, "1111 0000 0110 00"),
]
# Datasheet "Reference Junction Temperature Data Format" (12-bit, D15..D4).
INTERNAL_ROWS = [
    (127.0000, "0111 1111 0000"),
    (100.5625, "0110 0100 1001"),
    (25.0000, "0001 1001 0000"),
    (0.0000, "0000 0000 0000"),
    (-0.0625, "1111 1111 1111"),
    (-1.0000, "1111 1111 0000"),
    (-20.0000, "1110 1100 0000"),
    (-55.0000, "1100 1001 0000"),
]
INTERNAL_25 = "0001 1001 0000"


def frame(
    tc_bits: str, internal_bits: str = INTERNAL_25, *, fault: int = 0, low3: int = 0
) -> bytes:
    tc = int(tc_bits.replace(" ", ""), 2)
    internal = int(internal_bits.replace(" ", ""), 2)
    raw = (tc << 18) | (fault << 16) | (internal << 4) | low3
    return raw.to_bytes(4, "big")


def test_known_frame_25c() -> None:
    assert frame("0000 0001 1001 00") == bytes.fromhex("01901900")
    decoded = decode_frame(bytes.fromhex("01901900"))
    assert decoded.thermocouple_c == 25.0
    assert decoded.internal_c == 25.0
    assert not decoded.fault


@pytest.mark.parametrize(("temp", "bits"), THERMOCOUPLE_ROWS)
def test_thermocouple_rows(temp: float, bits: str) -> None:
    assert decode_frame(frame(bits)).thermocouple_c == temp


@pytest.mark.parametrize(("temp", "bits"), INTERNAL_ROWS)
def test_internal_rows(temp: float, bits: str) -> None:
    assert decode_frame(frame("0000 0001 1001 00", bits)).internal_c == temp


def test_linear_reading_without_correction() -> None:
    reading = frame_to_reading(frame("0000 0110 0100 11"), nist_correction=False)
    assert reading.status is Status.OK
    assert reading.temp_c == 100.75


@pytest.mark.parametrize(
    ("low3", "status"),
    [(0b001, Status.OPEN), (0b010, Status.SHORT), (0b100, Status.SHORT), (0b011, Status.OPEN)],
)
def test_fault_bits(low3: int, status: Status) -> None:
    reading = frame_to_reading(frame("0000 0000 0000 00", fault=1, low3=low3))
    assert reading.status is status
    assert reading.temp_c is None


def test_fault_bit_without_cause_is_error() -> None:
    assert frame_to_reading(frame("0000 0001 1001 00", fault=1)).status is Status.ERROR


def test_stuck_miso_is_error_or_fault() -> None:
    assert frame_to_reading(b"\x00\x00\x00\x00").status is Status.ERROR
    # All ones sets OC too: reported as open, never as a temperature.
    assert frame_to_reading(b"\xff\xff\xff\xff").temp_c is None


def test_bad_length() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        decode_frame(b"\x00\x00")


@pytest.mark.parametrize(("temp", "mv"), [(100, 4.096), (200, 8.138), (300, 12.209), (-50, -1.889)])
def test_nist_reference_table(temp: float, mv: float) -> None:
    # NIST ITS-90 type K table values (mV, reference junction 0 °C).
    assert k_type_mv(temp) == pytest.approx(mv, abs=0.002)
    assert k_type_temp(mv) == pytest.approx(temp, abs=0.06)


@given(
    true_c=st.floats(min_value=0, max_value=500),
    cold_c=st.floats(min_value=-10, max_value=60),
)
def test_nist_correction_recovers_true_temperature(true_c: float, cold_c: float) -> None:
    # What the chip reports: a linear conversion of the cold-junction-compensated emf.
    chip_c = cold_c + (k_type_mv(true_c) - k_type_mv(cold_c)) * 1000.0 / K_TYPE_UV_PER_C
    assert nist_corrected(chip_c, cold_c) == pytest.approx(true_c, abs=0.1)


def test_nist_correction_matters_at_pit_temperatures() -> None:
    # Thermocouple truly at 200 °C, cold junction 25 °C: the linear value is ~2.8 °C low.
    chip_c = 25 + (k_type_mv(200) - k_type_mv(25)) * 1000.0 / K_TYPE_UV_PER_C
    assert 196.5 < chip_c < 198.0
    assert nist_corrected(chip_c, 25) == pytest.approx(200, abs=0.05)


class FakeSpi:
    def __init__(self, response: bytes) -> None:
        self.response = response
        self.sent: list[bytes] = []
        self.closed = False

    def transfer(self, data: bytes) -> bytes:
        self.sent.append(data)
        return self.response

    def close(self) -> None:
        self.closed = True


class BrokenSpi(FakeSpi):
    def transfer(self, data: bytes) -> bytes:
        raise OSError(121, "Remote I/O error")


def test_probe_reads_over_spi() -> None:
    spi = FakeSpi(frame("0000 0001 1001 00"))
    probe = Max31855Probe("pit", spi)
    reading = probe.read()
    assert reading.temp_c == pytest.approx(25.0, abs=0.05)  # NIST inverse is ±0.05 °C
    assert spi.sent == [b"\x00\x00\x00\x00"]
    probe.close()
    assert spi.closed


def test_probe_spi_failure_is_error() -> None:
    assert Max31855Probe("pit", BrokenSpi(b"")).read().status is Status.ERROR
