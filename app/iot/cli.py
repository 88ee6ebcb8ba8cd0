"""``smokehouse ingest``: the MQTT ingest process (``smokehouse run`` starts one)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from app.cli_support import command_settings, friendly_errors


@friendly_errors
def ingest(
    client_id: Annotated[
        str,
        typer.Option(
            help="MQTT client id; its persistent session survives restarts. Give each ingest "
            "process on one host its own (default: SMOKEHOUSE_IOT_CLIENT_ID or "
            "smokehouse-ingest-<hostname>)."
        ),
    ] = "",
) -> None:
    """MQTT ingest: telemetry and device status → validated, deduped events on the bus."""
    from prometheus_client import start_http_server

    from app.heap import freeze_startup_heap
    from app.iot.ingest.subscriber import Ingestor
    from app.preflight import check_schema

    settings = command_settings()
    check_schema(settings)
    iot = settings.iot
    if iot.metrics_port:
        start_http_server(iot.metrics_port, addr=settings.http_host)
    ingestor = Ingestor(settings, iot, client_id=client_id or None)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        ingestor.request_stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    ingestor.start()
    freeze_startup_heap()
    stop.wait()
    ingestor.stop()
