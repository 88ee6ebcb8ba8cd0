"""MQTT ingest: telemetry and status messages → validated, deduped bus events, acked after commit.

``telemetry`` (pure) decides what a message is; ``batch`` writes a batch in one transaction;
``subscriber`` is the paho client and the batching thread that ties them together.
"""
