"""Bus transports, injectable so drivers run against fakes in tests.

The real ones import ``spidev`` / ``smbus2`` lazily, so the package installs and the tests run on
machines without either (``pip install 'smokehouse-device[pi]'`` on the Pi)."""

from __future__ import annotations

import importlib
import threading
from typing import Any, Protocol


class SpiTransport(Protocol):
    def transfer(self, data: bytes) -> bytes:
        """Full-duplex transfer: clock out ``data`` with chip select held, return what came in."""
        ...

    def close(self) -> None: ...


class I2cTransport(Protocol):
    def write_register16(self, address: int, register: int, value: int) -> None:
        """Write a 16-bit big-endian register."""
        ...

    def read_register16(self, address: int, register: int) -> int:
        """Read a 16-bit big-endian register (unsigned)."""
        ...

    def close(self) -> None: ...


class SpidevTransport:
    """``/dev/spidev<bus>.<device>`` through the ``spidev`` module."""

    def __init__(self, bus: int, device: int, *, mode: int, max_speed_hz: int) -> None:
        try:
            spidev = importlib.import_module("spidev")
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise RuntimeError(
                "the spidev module is not installed: pip install 'smokehouse-device[pi]'"
            ) from exc
        self._spi: Any = spidev.SpiDev()
        self._spi.open(bus, device)
        self._spi.mode = mode
        self._spi.max_speed_hz = max_speed_hz

    def transfer(self, data: bytes) -> bytes:
        return bytes(self._spi.xfer2(list(data)))

    def close(self) -> None:
        self._spi.close()


class Smbus2Transport:
    """``/dev/i2c-<bus>`` through ``smbus2``. One instance per bus is shared by its probes."""

    _shared: dict[int, Smbus2Transport] = {}
    _shared_lock = threading.Lock()

    def __init__(self, bus: int) -> None:
        try:
            smbus2 = importlib.import_module("smbus2")
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise RuntimeError(
                "the smbus2 module is not installed: pip install 'smokehouse-device[pi]'"
            ) from exc
        self._bus: Any = smbus2.SMBus(bus)
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, bus: int) -> Smbus2Transport:
        with cls._shared_lock:
            if bus not in cls._shared:
                cls._shared[bus] = cls(bus)
            return cls._shared[bus]

    def write_register16(self, address: int, register: int, value: int) -> None:
        with self._lock:
            self._bus.write_i2c_block_data(address, register, [(value >> 8) & 0xFF, value & 0xFF])

    def read_register16(self, address: int, register: int) -> int:
        with self._lock:
            data = self._bus.read_i2c_block_data(address, register, 2)
        return (int(data[0]) << 8) | int(data[1])

    def close(self) -> None:
        # Shared between probes on the same bus; the process exit closes the fd.
        pass
