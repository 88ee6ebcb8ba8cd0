from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smokehouse_device.drivers.ads1115 import (
    REG_CONFIG,
    Ads1115ThermistorProbe,
    code_to_volts,
    config_word,
)
from smokehouse_device.drivers.thermistor import PRESETS, Divider, SteinhartHart
from smokehouse_device.readings import Status

ET73 = PRESETS["maverick-et73"].coefficients
ET732 = PRESETS["maverick-et732"].coefficients


def test_config_word_matches_datasheet_layout() -> None:
    # AIN0 vs GND, ±2.048 V, single-shot, 128 SPS, comparator off: 0xC583.
    assert config_word(0, 2.048, 128) == 0xC583
    assert config_word(3, 4.096, 860) == 0xF3E3
    with pytest.raises(ValueError, match="channel"):
        config_word(4)


@pytest.mark.parametrize(
    ("code", "volts"),
    [(0x7FFF, 4.096 * 32767 / 32768), (0x8000, -4.096), (0x0001, 0.000125), (0, 0.0)],
)
def test_code_to_volts(code: int, volts: float) -> None:
    assert code_to_volts(code, 4.096) == pytest.approx(volts)


def test_preset_coefficients_match_published_r25() -> None:
    # Independently published R25 values: ET-72/73 ≈ 199.07 kΩ, ET-732 ≈ 990.02 kΩ.
    assert ET73.temperature_c(199_070) == pytest.approx(25.0, abs=0.3)
    assert ET732.temperature_c(990_020) == pytest.approx(25.0, abs=0.3)


@given(st.floats(min_value=-20, max_value=300))
def test_steinhart_hart_inverse(temp: float) -> None:
    for preset in PRESETS.values():
        sh = preset.coefficients
        assert sh.temperature_c(sh.resistance_ohm(temp)) == pytest.approx(temp, abs=1e-6)


@given(st.floats(min_value=0.01, max_value=0.99), st.sampled_from(["low", "high"]))
def test_divider_round_trip(ratio: float, placement: str) -> None:
    d = Divider(10_000, placement)  # type: ignore[arg-type]
    assert d.ratio(d.resistance(ratio)) == pytest.approx(ratio)


class FakeAds1115:
    """Converts the configured channel's voltage when OS is written, like the chip."""

    def __init__(self, volts: dict[int, float], fsr: float = 4.096) -> None:
        self.volts = volts
        self.fsr = fsr
        self.config = 0x8583
        self.conversion = 0
        self.writes: list[tuple[int, int, int]] = []

    def write_register16(self, address: int, register: int, value: int) -> None:
        self.writes.append((address, register, value))
        if register == REG_CONFIG:
            self.config = value & 0x7FFF  # busy until read back
            if value & 0x8000:
                channel = ((value >> 12) & 0x7) - 4
                code = round(self.volts[channel] / self.fsr * 32768)
                code = max(-32768, min(32767, code))
                self.conversion = code & 0xFFFF
                self.config |= 0x8000  # done

    def read_register16(self, address: int, register: int) -> int:
        return self.config if register == REG_CONFIG else self.conversion

    def close(self) -> None:
        pass


def probe_for(
    volts: float, *, coefficients: SteinhartHart = ET73, resistor: float = 10_000
) -> tuple[Ads1115ThermistorProbe, FakeAds1115]:
    fake = FakeAds1115({1: volts})
    probe = Ads1115ThermistorProbe(
        "meat",
        fake,
        channel=1,
        coefficients=coefficients,
        divider=Divider(resistor, "low"),
        supply_v=3.3,
        sleep=lambda s: None,
    )
    return probe, fake


@pytest.mark.parametrize("temp", [20.0, 65.0, 110.0, 225.0])
def test_et73_in_10k_divider(temp: float) -> None:
    divider = Divider(10_000, "low")
    volts = 3.3 * divider.ratio(ET73.resistance_ohm(temp))
    probe, fake = probe_for(volts)
    reading = probe.read()
    assert reading.status is Status.OK
    # 16-bit quantisation: well under 0.1 °C over the cooking range with ET-73 + 10 kΩ.
    assert reading.temp_c == pytest.approx(temp, abs=0.1)
    assert fake.writes[0] == (0x48, REG_CONFIG, config_word(1))


def test_et732_in_47k_divider() -> None:
    divider = Divider(47_000, "low")
    volts = 3.3 * divider.ratio(ET732.resistance_ohm(95.0))
    probe, _ = probe_for(volts, coefficients=ET732, resistor=47_000)
    assert probe.read().temp_c == pytest.approx(95.0, abs=0.1)


def test_unplugged_probe_reads_supply_rail_open() -> None:
    probe, _ = probe_for(3.3)
    reading = probe.read()
    assert reading.status is Status.OPEN
    assert reading.temp_c is None


def test_shorted_probe_reads_ground_short() -> None:
    probe, _ = probe_for(0.0)
    assert probe.read().status is Status.SHORT


def test_high_placement_rails_swap() -> None:
    d = Divider(10_000, "high")
    assert d.to_reading(0.0, ET73).status is Status.OPEN
    assert d.to_reading(1.0, ET73).status is Status.SHORT
    ratio = d.ratio(ET73.resistance_ohm(70.0))
    assert d.to_reading(ratio, ET73).temp_c == pytest.approx(70.0)


class StuckAds1115(FakeAds1115):
    def read_register16(self, address: int, register: int) -> int:
        return 0x0000  # never reports conversion done


class DeadBus(FakeAds1115):
    def write_register16(self, address: int, register: int, value: int) -> None:
        raise OSError(121, "Remote I/O error")


@pytest.mark.parametrize("fake", [StuckAds1115({0: 1.0}), DeadBus({0: 1.0})])
def test_bus_trouble_is_error(fake: FakeAds1115) -> None:
    probe = Ads1115ThermistorProbe(
        "meat", fake, channel=0, coefficients=ET73, divider=Divider(10_000), sleep=lambda s: None
    )
    assert probe.read().status is Status.ERROR
