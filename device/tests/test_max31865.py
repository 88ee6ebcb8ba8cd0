"""MAX31865: register-level fake with the datasheet's PT100 (R_REF = 400 Ω) code table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smokehouse_device.drivers.max31865 import (
    FAULT_HIGH_THRESHOLD,
    FAULT_LOW_THRESHOLD,
    FAULT_OVUV,
    FAULT_REFIN_HIGH,
    FAULT_REFIN_LOW,
    FAULT_RTDIN_LOW,
    Max31865Probe,
    config_byte,
    cvd_resistance,
    cvd_temperature,
    decode_rtd,
    resistance,
    sample_to_reading,
)
from smokehouse_device.readings import Status

# Datasheet Table 9 ("Temperature Example for PT100 with 400Ω RREF"): temperature → ADC code.
DATASHEET_CODES = [(-200, 1517), (-100, 4935), (0, 8192), (100, 11346), (200, 14406)]


class FakeMax31865:
    """Eight registers; SPI reads return the register contents, writes (0x80|addr) store."""

    def __init__(self) -> None:
        self.regs = bytearray(8)
        self.regs[3:5] = b"\xff\xff"  # power-on high threshold
        self.writes: list[tuple[int, bytes]] = []
        self.closed = False

    def set_code(self, code: int, fault: bool = False) -> None:
        word = (code << 1) | int(fault)
        self.regs[1], self.regs[2] = word >> 8, word & 0xFF

    def transfer(self, data: bytes) -> bytes:
        address = data[0]
        if address & 0x80:
            start = address & 0x7F
            self.writes.append((start, bytes(data[1:])))
            for i, value in enumerate(data[1:]):
                if start + i == 0:
                    value &= ~0x02  # fault-clear bit self-clears
                    if data[1] & 0x02:
                        self.regs[7] = 0
                self.regs[start + i] = value
            return bytes(len(data))
        return b"\x00" + bytes(self.regs[address : address + len(data) - 1])

    def close(self) -> None:
        self.closed = True


def frame_bytes(code: int, fault: bool = False) -> tuple[int, int]:
    word = (code << 1) | int(fault)
    return word >> 8, word & 0xFF


@pytest.mark.parametrize(("temp", "code"), DATASHEET_CODES)
def test_datasheet_codes(temp: float, code: int) -> None:
    msb, lsb = frame_bytes(code)
    sample = decode_rtd(msb, lsb)
    assert sample.code == code
    assert not sample.fault
    reading = sample_to_reading(sample, fault_status=0, r_ref=400.0, r0=100.0)
    assert reading.status is Status.OK
    assert reading.temp_c == pytest.approx(temp, abs=0.05)


def test_decode_rtd_fault_flag() -> None:
    assert decode_rtd(0x3B, 0x89).fault
    assert decode_rtd(0x3B, 0x89).code == 0x3B88 >> 1


def test_resistance() -> None:
    assert resistance(8192, 400.0) == 100.0


@given(st.floats(min_value=-200, max_value=850))
def test_cvd_round_trip(temp: float) -> None:
    for r0 in (100.0, 1000.0):
        assert cvd_temperature(cvd_resistance(temp, r0), r0) == pytest.approx(temp, abs=1e-6)


def test_cvd_reference_points() -> None:
    # IEC 60751 table: PT100 is 138.5055 Ω at 100 °C and 18.5201 Ω at -200 °C.
    assert cvd_resistance(100, 100) == pytest.approx(138.5055, abs=1e-4)
    assert cvd_resistance(-200, 100) == pytest.approx(18.5201, abs=1e-3)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (FAULT_HIGH_THRESHOLD, Status.OPEN),
        (FAULT_LOW_THRESHOLD, Status.SHORT),
        (FAULT_REFIN_HIGH, Status.OPEN),
        (FAULT_REFIN_LOW, Status.OPEN),
        (FAULT_RTDIN_LOW, Status.OPEN),
        (FAULT_OVUV, Status.ERROR),
        (FAULT_HIGH_THRESHOLD | FAULT_REFIN_LOW, Status.OPEN),
        (0, Status.ERROR),  # fault flag with an empty status register
    ],
)
def test_fault_status_mapping(status: int, expected: Status) -> None:
    sample = decode_rtd(*frame_bytes(8192, fault=True))
    reading = sample_to_reading(sample, fault_status=status, r_ref=400.0, r0=100.0)
    assert reading.status is expected
    assert reading.temp_c is None


def test_full_scale_code_is_open_even_without_fault_flag() -> None:
    sample = decode_rtd(0xFF, 0xFE)
    assert sample_to_reading(sample, fault_status=0, r_ref=430, r0=100).status is Status.OPEN


def test_near_zero_code_is_short() -> None:
    sample = decode_rtd(*frame_bytes(20))
    assert sample_to_reading(sample, fault_status=0, r_ref=430, r0=100).status is Status.SHORT


def test_config_byte() -> None:
    assert config_byte(wires=3, filter_hz=50) == 0xD1
    assert config_byte(wires=2, filter_hz=60) == 0xC0
    assert config_byte(wires=4, filter_hz=60, clear_fault=True) == 0xC2
    with pytest.raises(ValueError, match="wires"):
        config_byte(wires=5, filter_hz=50)


def test_probe_configures_and_reads_pt100() -> None:
    chip = FakeMax31865()
    chip.set_code(round(cvd_resistance(110.0, 100) / 430 * 32768))
    probe = Max31865Probe("pit", chip, rtd="pt100", wires=3, sleep=lambda s: None)
    reading = probe.read()
    assert reading.status is Status.OK
    assert reading.temp_c == pytest.approx(110.0, abs=0.05)
    # Thresholds written first (0x83..0x86), then the config with bias, auto, 3-wire, 50 Hz.
    assert chip.writes[0][0] == 0x03
    assert len(chip.writes[0][1]) == 4
    assert chip.writes[1] == (0x00, bytes([0xD3]))
    assert chip.regs[0] == 0xD1
    probe.close()
    assert chip.regs[0] == 0x00  # bias off
    assert chip.closed


def test_probe_pt1000() -> None:
    chip = FakeMax31865()
    chip.set_code(round(cvd_resistance(95.0, 1000) / 4300 * 32768))
    reading = Max31865Probe("meat", chip, rtd="pt1000", sleep=lambda s: None).read()
    assert reading.temp_c == pytest.approx(95.0, abs=0.05)


def test_probe_reads_fault_register_and_clears_it() -> None:
    chip = FakeMax31865()
    probe = Max31865Probe("pit", chip, sleep=lambda s: None)
    probe.read()
    chip.set_code(0x7FFF, fault=True)
    chip.regs[7] = FAULT_HIGH_THRESHOLD
    reading = probe.read()
    assert reading.status is Status.OPEN
    assert chip.writes[-1] == (0x00, bytes([0xD3]))  # fault clear
    assert chip.regs[7] == 0


class BrokenSpi:
    def transfer(self, data: bytes) -> bytes:
        raise OSError(5, "Input/output error")

    def close(self) -> None:
        pass


def test_probe_spi_failure_is_error() -> None:
    assert Max31865Probe("pit", BrokenSpi(), sleep=lambda s: None).read().status is Status.ERROR
