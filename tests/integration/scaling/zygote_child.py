"""What the zygote tests fork: records its environment's ``MARK`` and its arguments, then waits
for SIGTERM (a warm shutdown) and records that too."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    out = Path(os.environ["MARK_FILE"])
    stopped = False

    def stop(*_: object) -> None:
        global stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    out.write_text(f"{os.environ['MARK']} {' '.join(sys.argv[1:])} {os.getpid()}\n")
    while not stopped:
        time.sleep(0.05)
    with out.open("a") as mark:
        mark.write("stopped\n")
