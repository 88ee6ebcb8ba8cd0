"""The fuzz tests' summary: examples and 5xx seen per operation, at the end of the run.

Each fuzz test appends ``("fuzz", {...})`` to its ``user_properties``
(tests/security/fuzz_support.py); reports carry them to the controller under pytest-xdist,
where they are summed here and printed as a table plus one JSON line (``FUZZ-SUMMARY {...}``)
for the note and for CI logs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

_FIGURES: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name != "fuzz":
            continue
        entry = _FIGURES.setdefault(value["operation"], {"examples": 0, "5xx": 0, "kinds": {}})
        entry["examples"] += value["examples"]
        entry["5xx"] += value["5xx"]
        for kind, count in value.get("kinds", {}).items():
            entry["kinds"][kind] = entry["kinds"].get(kind, 0) + count


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.write_sep("=", "fuzz examples per operation")
    width = max(len(name) for name in _FIGURES)
    for name in sorted(_FIGURES):
        entry = _FIGURES[name]
        terminalreporter.write_line(
            f"{name:<{width}}  examples {entry['examples']:>6}  5xx {entry['5xx']:>4}"
        )
    total = {
        "operations": len(_FIGURES),
        "examples": sum(e["examples"] for e in _FIGURES.values()),
        "5xx": sum(e["5xx"] for e in _FIGURES.values()),
    }
    terminalreporter.write_line(
        "FUZZ-SUMMARY " + json.dumps({"total": total, "per_operation": _FIGURES}, sort_keys=True)
    )
