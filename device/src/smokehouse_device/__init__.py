"""smokehouse-device: the Raspberry Pi BBQ thermometer publisher.

Reads temperature probes (DS18B20, MAX31855, MAX31865, ADS1115 + NTC thermistors) or a
simulated cook and publishes them over MQTT with a disk-backed offline buffer. It never
imports the smokehouse server.
"""

__version__ = "0.1.0"
