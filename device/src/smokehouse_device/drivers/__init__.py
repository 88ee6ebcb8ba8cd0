"""Probe drivers. Each driver module is small, takes an injectable transport (or a sysfs base
path) and keeps its decoding pure so it can be tested on datasheet byte frames."""
