"""machine.py: RuleMatcher, the compiled machine for many rules."""

from __future__ import annotations

import random
from typing import Any

import pytest

from app.bus.patterns import RuleMatcher, parse_pattern
from app.bus.patterns.machine import _MAX_REGION_ENTRIES, _Ranges, _State
from app.bus.patterns.reference import reference_matches
from tests.unit.bus.patterns.cases import CASES


def test_documented_cases_one_rule_each() -> None:
    for name, pattern, event, expected in CASES:
        assert RuleMatcher.build({name: pattern}).match(event) == ([name] if expected else []), name


def test_documented_cases_all_at_once() -> None:
    machine = RuleMatcher.build({name: pattern for name, pattern, _, _ in CASES})
    assert len(machine) == len(CASES)
    for name, _, event, _ in CASES:
        expected = [n for n, p, _, _ in CASES if reference_matches(p, event)]
        assert machine.match(event) == expected, name


def test_results_follow_build_order_and_ids_can_be_anything() -> None:
    rules: dict[Any, Any] = {("t", 2): {"a": ["x"]}, 7: {"a": [{"prefix": "x"}]}, "z": {"b": ["y"]}}
    machine = RuleMatcher.build(rules)
    assert machine.match({"a": "x", "b": "y"}) == [("t", 2), 7, "z"]
    assert machine.rule_ids == [("t", 2), 7, "z"]
    assert machine.pattern(1) == parse_pattern({"a": [{"prefix": "x"}]})


def test_empty_machine() -> None:
    machine: RuleMatcher[str] = RuleMatcher.build({})
    assert machine.match({"a": 1}) == []


def test_rejects_non_objects() -> None:
    machine = RuleMatcher.build({"r": {"a": ["x"]}})
    with pytest.raises(TypeError):
        machine.match([1, 2])  # type: ignore[arg-type]


def test_same_pattern_twice_and_or_branches() -> None:
    machine = RuleMatcher.build(
        {
            "r1": {"a": ["x"]},
            "r2": {"a": ["x"]},
            "r3": {"$or": [{"a": ["x"]}, {"b": ["y"]}]},
        }
    )
    assert machine.match({"a": "x", "b": "y"}) == ["r1", "r2", "r3"]
    assert machine.match({"b": "y"}) == ["r3"]


def test_every_operator_indexed_side_by_side() -> None:
    rules: dict[str, Any] = {
        "exact": {"f": ["abc", 5, True, None]},
        "prefix": {"f": [{"prefix": "ab"}]},
        "prefix_ic": {"f": [{"prefix": {"equals-ignore-case": "AB"}}]},
        "suffix": {"f": [{"suffix": "bc"}]},
        "suffix_ic": {"f": [{"suffix": {"equals-ignore-case": "BC"}}]},
        "eic": {"f": [{"equals-ignore-case": "ABC"}]},
        "wild_head": {"f": [{"wildcard": "a*"}]},
        "wild_tail": {"f": [{"wildcard": "*c"}]},
        "wild_scan": {"f": [{"wildcard": "*b*"}]},
        "wild_any": {"f": [{"wildcard": "*"}]},
        "numeric": {"f": [{"numeric": [">", 1, "<", 10]}]},
        "numeric_eq": {"f": [{"numeric": ["=", 5]}]},
        "cidr": {"f": [{"cidr": "10.0.0.0/8"}]},
        "ip": {"f": ["::1"]},
        "exists": {"f": [{"exists": True}]},
        "absent": {"f": [{"exists": False}]},
        "ab": {"f": [{"anything-but": ["abc", "x"]}]},
        "ab_num": {"f": [{"anything-but": 5}]},
        "ab_ic": {"f": [{"anything-but": {"equals-ignore-case": "ABC"}}]},
        "ab_prefix": {"f": [{"anything-but": {"prefix": "a"}}]},
        "ab_suffix": {"f": [{"anything-but": {"suffix": "c"}}]},
        "ab_wild": {"f": [{"anything-but": {"wildcard": "a*"}}]},
    }
    machine = RuleMatcher.build(rules)
    for value in [
        "abc",
        "ABC",
        "xbc",
        "",
        5,
        5.0,
        3,
        11,
        True,
        None,
        "10.1.2.3",
        "0::1",
        ["abc", 5],
    ]:
        event = {"f": value}
        expected = [r for r, p in rules.items() if reference_matches(p, event)]
        assert machine.match(event) == expected, value
    assert machine.match({}) == ["absent"]


def test_many_overlapping_ranges_fall_back_to_a_scan() -> None:
    n = 700  # 700 overlapping ranges cover ~n*n/2 region entries: over the index limit
    assert n * n // 2 > _MAX_REGION_ENTRIES
    rules = {f"r{i}": {"x": [{"numeric": [">=", i, "<", i + n]}]} for i in range(n)}
    machine = RuleMatcher.build(rules)
    for x in (-1, 0, 350.5, 699, 700, 1398.9, 1399, 2000):
        expected = [f"r{i}" for i in range(n) if i <= x < i + n]
        assert machine.match({"x": x}) == expected


def test_ranges_index() -> None:
    state = _State()
    inf = float("inf")
    ranges = _Ranges([(1.0, True, 5.0, False, state), (-inf, False, 1.0, False, state)])
    assert ranges.lookup(0.0) == (state,)
    assert ranges.lookup(1.0) == (state,)
    assert ranges.lookup(3.0) == (state,)
    assert ranges.lookup(5.0) == (state,)
    assert ranges.lookup(5.5) == ()


def test_array_consistency_is_rechecked() -> None:
    rules = {
        "same-element": {"p": {"id": ["a"], "t": [{"numeric": [">", 100]}]}},
        "any-element": {"p": {"id": ["a"]}, "q": [{"numeric": [">", 0]}]},
        # "p.zerr" sorts after "p.id": checked in the element chosen for "p.id"
        "absent-in-element": {"p": {"id": ["a"], "zerr": [{"exists": False}]}},
        # "p.err" sorts before "p.id": checked before any element is chosen
        "absent-before": {"p": {"id": ["a"], "err": [{"exists": False}]}},
    }
    machine = RuleMatcher.build(rules)
    assert machine.match({"p": [{"id": "a", "t": 50}, {"id": "b", "t": 150}], "q": 1}) == [
        "any-element",
        "absent-in-element",
        "absent-before",
    ]
    assert machine.match({"p": [{"id": "a", "t": 150, "zerr": 1, "err": 1}]}) == ["same-element"]
    both = {"p": [{"id": "a", "zerr": 1, "err": 1}, {"id": "a"}]}
    assert machine.match(both) == ["absent-in-element"]


def test_random_rules_agree_with_the_reference() -> None:
    rng = random.Random(7)
    values: list[Any] = ["a", "b", "ab", "A", 1, 2.5, None, True, "10.0.0.7"]
    ops: list[Any] = [
        *values,
        {"prefix": "a"},
        {"suffix": "b"},
        {"equals-ignore-case": "a"},
        {"wildcard": "a*"},
        {"numeric": [">", 1]},
        {"anything-but": "a"},
        {"anything-but": [1, 2]},
        {"exists": True},
        {"exists": False},
        {"cidr": "10.0.0.0/29"},
    ]
    fields = ["f", "g", "h.i"]

    def rule() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path in rng.sample(fields, rng.randint(1, 3)):
            node = out
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = rng.sample(ops, rng.randint(1, 2))
        return out

    rules = {f"r{i}": rule() for i in range(300)}
    machine = RuleMatcher.build(rules)
    for _ in range(300):
        event: dict[str, Any] = {}
        for path in rng.sample(fields, rng.randint(0, 3)):
            value: Any = rng.choice(values)
            if rng.random() < 0.2:
                value = [rng.choice(values), rng.choice(values)]
            if path == "h.i":
                event["h"] = (
                    [{"i": value}, {"i": rng.choice(values)}]
                    if rng.random() < 0.3
                    else {"i": value}
                )
            else:
                event[path] = value
        expected = [r for r, p in rules.items() if reference_matches(p, event)]
        assert machine.match(event) == expected, event
