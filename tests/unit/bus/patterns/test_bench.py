"""bench/bus_match.py: its generated rules are valid and the machine agrees with the loop."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

from app.bus.patterns import RuleMatcher, parse_pattern
from app.bus.patterns.reference import reference_matches

BENCH = Path(__file__).resolve().parents[4] / "bench" / "bus_match.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bus_match_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generated_rules_and_events_agree_with_the_reference() -> None:
    bench = load_bench()
    rules = bench.make_rules(random.Random(1), 400)
    events = bench.make_events(random.Random(2), 150)
    patterns = {rid: parse_pattern(rule) for rid, rule in rules.items()}
    machine = RuleMatcher.build(patterns)
    matched = 0
    for event in events:
        expected = [rid for rid, p in rules.items() if reference_matches(p, event)]
        assert machine.match(event) == expected
        matched += bool(expected)
    assert matched > 0
