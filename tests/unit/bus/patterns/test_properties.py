"""Property tests: the compiled machine, ``matches`` and the reference matcher always agree."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bus.patterns import RuleMatcher, matches, parse_pattern
from app.bus.patterns.reference import reference_matches
from tests.unit.bus.patterns.strategies import event_and_pattern, events, patterns

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(patterns)
def test_generated_patterns_are_valid_and_round_trip(pattern: dict[str, Any]) -> None:
    p = parse_pattern(pattern)
    assert parse_pattern(p.source) == p
    assert p.to_dict() == pattern


@SETTINGS
@given(patterns, events)
def test_matches_agrees_with_reference(pattern: dict[str, Any], event: dict[str, Any]) -> None:
    assert matches(parse_pattern(pattern), event) == reference_matches(pattern, event)


@SETTINGS
@given(event_and_pattern())
def test_derived_patterns_agree_with_reference(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    event, pattern = case
    expected = reference_matches(pattern, event)
    p = parse_pattern(pattern)
    assert matches(p, event) == expected
    assert RuleMatcher.build({"r": p}).match(event) == (["r"] if expected else [])


@SETTINGS
@given(st.lists(patterns, min_size=1, max_size=8), st.lists(events, min_size=1, max_size=4))
def test_machine_agrees_with_reference(
    rules: list[dict[str, Any]], batch: list[dict[str, Any]]
) -> None:
    machine = RuleMatcher.build({f"r{i}": p for i, p in enumerate(rules)})
    for event in batch:
        expected = [f"r{i}" for i, p in enumerate(rules) if reference_matches(p, event)]
        assert machine.match(event) == expected, event


@SETTINGS
@given(st.lists(event_and_pattern(), min_size=2, max_size=8))
def test_machine_with_derived_rules_agrees_with_reference(
    cases: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    rules = {f"r{i}": pattern for i, (_, pattern) in enumerate(cases)}
    machine = RuleMatcher.build(rules)
    for event, _ in cases:
        expected = [rid for rid, p in rules.items() if reference_matches(p, event)]
        assert machine.match(event) == expected, event
