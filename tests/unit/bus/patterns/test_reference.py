"""reference.py: the rule-by-rule matcher used as the oracle in property tests."""

from __future__ import annotations

from typing import Any

import pytest

from app.bus.patterns import parse_pattern
from app.bus.patterns.reference import reference_matches
from tests.unit.bus.patterns.cases import CASES


@pytest.mark.parametrize(("name", "pattern", "event", "expected"), CASES, ids=[c[0] for c in CASES])
def test_documented_cases(
    name: str, pattern: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    assert reference_matches(pattern, event) is expected


def test_accepts_text_dicts_and_patterns() -> None:
    event = {"source": "aws.ec2"}
    assert reference_matches('{"source": ["aws.ec2"]}', event)
    assert reference_matches({"source": ["aws.ec2"]}, event)
    assert reference_matches(parse_pattern({"source": ["aws.ec2"]}), event)


def test_alternatives_and_overrides() -> None:
    pattern = {"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]}
    assert reference_matches(pattern, {"a": "2"})
    assert reference_matches(pattern, {"a": "1", "b": "3"})
    assert not reference_matches(pattern, {"a": "1"})
    nested = {"d": {"$or": [{"x": [1]}, {"y": [2]}]}, "e": ["z"]}
    assert reference_matches(nested, {"d": {"y": 2}, "e": "z"})
    assert not reference_matches(nested, {"d": {"y": 2}})


def test_huge_integers() -> None:
    assert reference_matches({"n": [10**400]}, {"n": 10**400})
    assert not reference_matches({"n": [{"numeric": [">", 0]}]}, {"n": 10**400})
    assert reference_matches({"n": [{"anything-but": [1]}]}, {"n": 10**400})


def test_unknown_operator() -> None:
    with pytest.raises(ValueError, match="unknown operator"):
        reference_matches({"a": [{"regex": "x"}]}, {"a": "x"})
