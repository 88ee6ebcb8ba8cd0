"""The example's handler: a message body ``{"cut": ..., "fail": bool}`` -- it raises for
``fail`` (to show redelivery and the dead-letter queue), otherwise it appends the cut to
``$POLLER_OUT`` (a file, so whoever runs the example can see what was handled)."""

from __future__ import annotations

import json
import os


def handle(body: str) -> None:
    message = json.loads(body)
    if message.get("fail"):
        raise RuntimeError(f"cannot smoke {message.get('cut')}")
    with open(os.environ.get("POLLER_OUT", "handled.txt"), "a") as out:
        out.write(f"{message['cut']}\n")
