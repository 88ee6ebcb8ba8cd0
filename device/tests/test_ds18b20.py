from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from device_harness import make_w1_tree

from smokehouse_device.drivers.ds18b20 import (
    Ds18b20Error,
    Ds18b20Probe,
    discover,
    parse_temperature_file,
    parse_w1_slave,
)
from smokehouse_device.readings import CalibratedProbe, Status

SENSOR = "28-0316a2795aff"
GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
BAD_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=3c NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
NEGATIVE = "5e ff 4b 46 7f ff 02 10 c7 : crc=c7 YES\n5e ff 4b 46 7f ff 02 10 c7 t=-10125\n"


def make_tree(base: Path, files: dict[str, str], sensor: str = SENSOR) -> Path:
    return make_w1_tree(base, files, sensor)


def test_parse_w1_slave_good() -> None:
    assert parse_w1_slave(GOOD).milli_c == 23125


def test_parse_w1_slave_negative() -> None:
    assert parse_w1_slave(NEGATIVE).milli_c == -10125


def test_parse_w1_slave_crc_no() -> None:
    with pytest.raises(Ds18b20Error, match="CRC"):
        parse_w1_slave(BAD_CRC)


@pytest.mark.parametrize("text", ["", "garbage", "xx : crc=57 YES\nno value here\n"])
def test_parse_w1_slave_junk(text: str) -> None:
    with pytest.raises(Ds18b20Error):
        parse_w1_slave(text)


def test_parse_temperature_file() -> None:
    assert parse_temperature_file("23125\n").milli_c == 23125
    with pytest.raises(Ds18b20Error):
        parse_temperature_file("nope\n")


def test_reads_w1_slave(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"w1_slave": GOOD})
    reading = Ds18b20Probe("ambient", SENSOR, base_path=base).read()
    assert reading.status is Status.OK
    assert reading.temp_c == pytest.approx(23.125)


def test_reads_newer_temperature_file(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"temperature": "-10125\n"})
    reading = Ds18b20Probe("ambient", SENSOR, base_path=base).read()
    assert reading.temp_c == pytest.approx(-10.125)


def test_explicit_temperature_source_wins_over_w1_slave(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"w1_slave": GOOD, "temperature": "30000\n"})
    assert Ds18b20Probe("a", SENSOR, base_path=base, source="temperature").read().temp_c == 30.0
    assert Ds18b20Probe("a", SENSOR, base_path=base).read().temp_c == 23.125


def test_crc_no_twice_is_error(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"w1_slave": BAD_CRC})
    reading = Ds18b20Probe("a", SENSOR, base_path=base).read()
    assert reading.status is Status.ERROR
    assert reading.temp_c is None
    assert "CRC" in reading.detail


def sequence_reader(texts: list[str]) -> tuple[list[Path], object]:
    calls: list[Path] = []
    it: Iterator[str] = iter(texts)

    def read(path: Path) -> str:
        calls.append(path)
        return next(it)

    return calls, read


@pytest.mark.parametrize("first", [BAD_CRC, POWER_ON])
def test_bad_first_read_is_retried_once(tmp_path: Path, first: str) -> None:
    base = make_tree(tmp_path, {"w1_slave": GOOD})
    calls, read = sequence_reader([first, GOOD])
    reading = Ds18b20Probe("a", SENSOR, base_path=base, reader=read).read()  # type: ignore[arg-type]
    assert reading.status is Status.OK
    assert reading.temp_c == pytest.approx(23.125)
    assert len(calls) == 2


def test_power_on_value_twice_is_error(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"w1_slave": POWER_ON})
    reading = Ds18b20Probe("a", SENSOR, base_path=base).read()
    assert reading.status is Status.ERROR
    assert "85.000" in reading.detail


def test_power_on_value_in_temperature_file_rejected(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"temperature": "85000\n"})
    assert Ds18b20Probe("a", SENSOR, base_path=base).read().status is Status.ERROR


def test_missing_sensor_is_open(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"w1_slave": GOOD})
    reading = Ds18b20Probe("a", "28-000000000001", base_path=base).read()
    assert reading.status is Status.OPEN
    assert reading.temp_c is None


def test_io_error_is_error(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"w1_slave": GOOD})

    def broken(path: Path) -> str:
        raise OSError(5, "Input/output error")

    reading = Ds18b20Probe("a", SENSOR, base_path=base, reader=broken).read()
    assert reading.status is Status.ERROR


def test_discover_lists_only_ds18b20(tmp_path: Path) -> None:
    make_tree(tmp_path, {"w1_slave": GOOD})
    make_tree(tmp_path, {"w1_slave": GOOD}, sensor="28-00000aabbccd")
    (tmp_path / "10-000802b5a4c1").mkdir()  # a DS18S20: other family
    assert discover(tmp_path) == ["28-00000aabbccd", SENSOR]
    assert discover(tmp_path / "nope") == []


def test_calibration_offset(tmp_path: Path) -> None:
    base = make_tree(tmp_path, {"w1_slave": GOOD})
    probe = CalibratedProbe(Ds18b20Probe("a", SENSOR, base_path=base), offset_c=-1.5)
    assert probe.read().temp_c == pytest.approx(21.625)
    # Offsets never turn a missing reading into a number.
    missing = CalibratedProbe(Ds18b20Probe("a", "28-000000000001", base_path=base), offset_c=2)
    assert missing.read().temp_c is None
