"""pattern.py: parse_pattern, the Pattern object, branches, matches and TestEventPattern."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from app.bus.patterns import (
    InvalidEventPattern,
    Pattern,
    PatternLimits,
    matches,
    parse_pattern,
    test_event_pattern,
)
from app.bus.patterns.matchers import (
    AnythingBut,
    AnythingButIgnoreCase,
    AnythingButPrefix,
    Cidr,
    Constraint,
    EqualsIgnoreCase,
    Exact,
    Exists,
    IpExact,
    Numeric,
    Prefix,
    Suffix,
)
from app.bus.patterns.pattern import compile_constraint, java_order
from tests.unit.bus.patterns.cases import CASES

INF = float("inf")


@pytest.mark.parametrize(("name", "pattern", "event", "expected"), CASES, ids=[c[0] for c in CASES])
def test_documented_cases(
    name: str, pattern: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    assert matches(parse_pattern(pattern), event) is expected


def test_inputs() -> None:
    text = '{"source": ["aws.ec2"]}'
    p = parse_pattern(text)
    assert p.text == text
    assert p.source == '{"source":["aws.ec2"]}'
    assert parse_pattern(text.encode()) == p
    assert parse_pattern({"source": ["aws.ec2"]}) == p
    assert parse_pattern(p) is p
    with pytest.raises(TypeError):
        parse_pattern(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidEventPattern, match="UTF-8"):
        parse_pattern(b"\xff")
    with pytest.raises(InvalidEventPattern, match="not JSON"):
        parse_pattern({"a": [{1, 2}]})


def test_pattern_is_immutable_hashable_and_serialisable() -> None:
    p = parse_pattern('{ "b": [1],\n  "a": ["x"] }')
    assert p.source == '{"b":[1],"a":["x"]}'  # key order kept: with $or it can matter
    assert json.loads(p.source) == p.to_dict() == {"b": [1], "a": ["x"]}
    assert {p: 1}[parse_pattern({"b": [1], "a": ["x"]})] == 1
    assert p != parse_pattern({"a": ["x"], "b": [1]})
    assert p != "not a pattern"
    with pytest.raises(AttributeError):
        p.text = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(p)) == p
    assert repr(p) == 'Pattern({"b":[1],"a":["x"]})'
    assert str(p) == p.text
    assert p.paths == {"a", "b"}


def test_pickle_keeps_patterns_allowed_by_larger_limits() -> None:
    text = '{"a": ["' + "x" * 3000 + '"]}'
    p = parse_pattern(text, limits=PatternLimits(max_length=4096))
    assert pickle.loads(pickle.dumps(p)) == p


def test_duplicate_keys() -> None:
    # later values win, duplicate objects merge (event-ruler keeps every field of both)
    p = parse_pattern('{"a": ["x"], "a": ["y"], "d": {"b": ["1"]}, "d": {"c": ["2"]}}')
    assert p.to_dict() == {"a": ["y"], "d": {"b": ["1"], "c": ["2"]}}


def keys(p: Pattern) -> list[list[str]]:
    return [[k.path for k in branch] for branch in p.branches]


def test_branches_multiply_out_or() -> None:
    p = parse_pattern(
        {
            "source": ["s"],
            "$or": [{"a": ["1"]}, {"b": ["2"], "$or": [{"c": ["3"]}, {"d": ["4"]}]}],
            "detail": {"$or": [{"x": ["5"]}, {"y": ["6"]}]},
        }
    )
    assert sorted(keys(p)) == [
        ["a", "detail.x", "source"],
        ["a", "detail.y", "source"],
        ["b", "c", "detail.x", "source"],
        ["b", "c", "detail.y", "source"],
        ["b", "d", "detail.x", "source"],
        ["b", "d", "detail.y", "source"],
    ]


def test_later_fields_override_within_an_alternative() -> None:
    p = parse_pattern({"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]})
    assert [[(k.path, k.constraint) for k in br] for br in p.branches] == [
        [("a", compile_constraint(["2"]))],
        [("a", compile_constraint(["1"])), ("b", compile_constraint(["3"]))],
    ]
    p = parse_pattern({"$or": [{"a": ["2"]}, {"b": ["3"]}], "a": ["1"]})
    assert [[k.constraint for k in br if k.path == "a"] for br in p.branches] == [
        [compile_constraint(["1"])],
        [compile_constraint(["1"])],
    ]


def test_identical_branches_are_merged() -> None:
    assert len(parse_pattern({"$or": [{"a": ["1"]}, {"a": ["1"]}]}).branches) == 1


def test_branch_keys_sort_like_java() -> None:
    assert sorted(["\ue000", "\U0001f600"], key=java_order) == ["\U0001f600", "\ue000"]
    p = parse_pattern({"\ue000": ["x"], "\U0001f600": ["y"]})
    assert keys(p) == [["\U0001f600", "\ue000"]]


def test_compile_constraint() -> None:
    c = compile_constraint(
        [
            "s",
            "10.0.0.1",
            3,
            True,
            None,
            {"exactly": "10.0.0.1"},
            {"prefix": "p"},
            {"prefix": {"equals-ignore-case": "P"}},
            {"suffix": {"equals-ignore-case": "S"}},
            {"suffix": "s"},
            {"equals-ignore-case": "E"},
            {"numeric": [">", 0, "<=", 5]},
            {"numeric": ["=", 3]},
            {"numeric": ["<", 1]},
            {"anything-but": "x"},
            {"anything-but": [1, 2]},
            {"anything-but": {"equals-ignore-case": ["A", "b"]}},
            {"anything-but": {"prefix": "p"}},
            {"cidr": "10.0.0.0/8"},
            {"exists": True},
        ]
    )
    assert not c.absent
    assert {
        Exact("s"),
        IpExact("10.0.0.1", 32, 0x0A000001),
        Exact(3.0),
        Exact(None),
        Exact("10.0.0.1"),
        Prefix("p"),
        Prefix("p", ignore_case=True),
        Suffix("s", ignore_case=True),
        Suffix("s"),
        EqualsIgnoreCase("e"),
        Numeric(0.0, True, 5.0, False),
        Numeric(3.0, False, 3.0, False),
        Numeric(-INF, False, 1.0, True),
        AnythingBut(frozenset({"x"})),
        AnythingBut(frozenset({1.0, 2.0})),
        AnythingButIgnoreCase(frozenset({"a", "b"})),
        AnythingButPrefix(("p",)),
        Cidr("10.0.0.0/8", 32, 0x0A000000, 0x0AFFFFFF),
        Exists(),
    } <= c.matchers
    assert compile_constraint([{"exists": False}]) == Constraint(frozenset(), absent=True)


def test_matches_needs_an_object() -> None:
    with pytest.raises(TypeError):
        matches(parse_pattern({"a": ["x"]}), ["not", "an", "object"])  # type: ignore[arg-type]


def test_test_event_pattern() -> None:
    assert test_event_pattern('{"source": ["aws.ec2"]}', {"source": "aws.ec2"})
    assert not test_event_pattern({"source": ["aws.ec2"]}, {"source": "aws.s3"})
    with pytest.raises(InvalidEventPattern):
        test_event_pattern('{"source": "aws.ec2"}', {"source": "aws.ec2"})


def test_absent_is_judged_with_the_fields_before_it() -> None:
    # event-ruler checks `exists: false` against the array elements chosen for the fields
    # that sort before it; a field sorting after it cannot narrow the check.
    event = {"e": [{"a": 1}, {"b": "x"}]}
    assert not matches(parse_pattern({"e": {"a": [{"exists": False}], "b": ["x"]}}), event)
    assert matches(parse_pattern({"e": {"z": [{"exists": False}], "b": ["x"]}}), event)
    event2 = {"e": [{"b": "x"}, {"c": 1}]}
    assert matches(parse_pattern({"e": {"b": ["x"], "c": [{"exists": False}]}}), event2)
