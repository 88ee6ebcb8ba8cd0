"""MQTT: the embedded broker, connections to a real one, and (later) telemetry ingestion."""
