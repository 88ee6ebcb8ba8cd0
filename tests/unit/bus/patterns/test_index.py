"""machine.py's predicate index and flatten.scan: the parts the other tests only reach indirectly.

``scan`` must read an event exactly as ``flatten`` does; the per-path memo must never change a
result (whatever its size, whatever order values arrive in); anchoring, exists-false branches
and the array re-check must agree with the reference matcher.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bus.patterns import RuleMatcher
from app.bus.patterns import machine as machine_module
from app.bus.patterns.flatten import Lookup, flatten, path_tree, scan, scan_tree
from app.bus.patterns.matchers import IpError, Value, event_ip, ip_bytes
from app.bus.patterns.reference import reference_matches
from tests.unit.bus.patterns.strategies import KEYS, NESTED, event_values, events, patterns

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Events whose keys hold dots too ("d.a" reaches the same path as {"d": {"a": ...}}).
_dotted_events = st.dictionaries(
    st.sampled_from([*KEYS, NESTED, "d.a", "d.d", "d.d.a"]), event_values, max_size=4
)
_PATHS = ["a", "b", "c", "d", "d.a", "d.b", "d.d", "d.d.a", "d.d.b", "d.a.a", "zz"]


def _recording_tree(paths: list[str], counted: set[str]) -> Any:
    """A scan tree whose every lookup misses and records (path, value) instead."""

    def recorder(path: str) -> Any:
        def compute(v: Value) -> tuple[int, tuple[tuple[str, Value], ...]]:
            return 0, ((path, v),)

        return compute

    lookups: dict[str, Lookup] = {p: ({}, recorder(p), p in counted) for p in paths}
    return scan_tree(lookups)


@SETTINGS
@given(st.one_of(events, _dotted_events), st.sets(st.sampled_from(_PATHS), min_size=1))
def test_scan_reads_events_like_flatten(event: dict[str, Any], paths: set[str]) -> None:
    counted = {p for p in paths if len(p) % 2}  # some paths ask for counts, some do not
    found: list[tuple[str, Value]] = []
    counts: dict[str, int] = {}
    in_arrays: dict[str, int] = {}
    assert scan(event, _recording_tree(sorted(paths), counted), found, counts, in_arrays) == 0

    every, _ = flatten(event)
    values, expected_in_arrays = flatten(event, path_tree(paths))
    expected = {p: vs for p, vs in every.items() if p in paths}
    assert {p: vs for p, vs in values.items() if p in paths} == expected
    seen: dict[str, list[Value]] = {}
    for path, v in found:
        seen.setdefault(path, []).append(v)
    assert seen == expected
    assert counts == {p: len(vs) for p, vs in expected.items() if p in counted}
    # like flatten with the same tree, values met on the way to a path count too
    assert in_arrays == expected_in_arrays


def test_scan_uses_tables_and_unions_bits() -> None:
    table: dict[Value, Any] = {"x": (0b01, ("hit-x",)), "y": (0b10, ()), "z": ()}
    computed: list[Value] = []

    def compute(v: Value) -> Any:
        computed.append(v)
        return (0b100, ("computed",)) if v == 7.0 else ()

    tree = scan_tree({"a": (table, compute, False), "b.c": (table, None, False)})
    found: list[str] = []
    event = {"a": ["x", "y", "z", 7, "w"], "b": {"c": ["y", "nothing"]}}
    assert scan(event, tree, found, {}, {}) == 0b111
    assert found == ["hit-x", "computed"]
    assert computed == [7.0, "w"]  # "z" is in the table (as "no match"); "b.c" has no compute


def _agree(rules: dict[str, Any], batch: list[dict[str, Any]]) -> None:
    machine = RuleMatcher.build(rules)
    for _ in range(2):  # the second time, outcomes come from the memo
        for event in batch:
            expected = [rid for rid, p in rules.items() if reference_matches(p, event)]
            assert machine.match(event) == expected, event


RULES: dict[str, Any] = {
    "prefix": {"a": [{"prefix": "1"}]},
    "positive": {"a": [{"numeric": [">", 0]}]},
    "exact-one": {"a": [1]},
    "true": {"a": [True]},
    "null": {"a": [None]},
    "wild": {"a": [{"wildcard": "*0*"}]},
    "cidr": {"a": [{"cidr": "10.0.0.0/30"}]},
    "not-1": {"a": [{"anything-but": [1, 10]}]},
    "not-str-1": {"a": [{"anything-but": "1"}]},
    "not-prefix": {"a": [{"anything-but": {"prefix": "1"}}]},
}
VALUES: list[Any] = [1, 1.0, "1", True, None, "10", 10, "10.0.0.1", "10.0.0.9", 0, -0.0, "x"]


def test_memo_keys_never_mix_json_types() -> None:
    _agree(RULES, [{"a": v} for v in VALUES] + [{"a": VALUES}])


def test_a_full_or_tiny_memo_changes_nothing() -> None:
    batch = [{"a": v} for v in VALUES] + [{"a": f"1{i}"} for i in range(30)]
    batch += [{"a": i / 4} for i in range(30)] + [{"a": "1" * 200}]
    with mock.patch.object(machine_module, "_MEMO_SIZE", 3):
        _agree(RULES, batch)
    with mock.patch.object(machine_module, "_MEMO_LENGTH", 0):
        _agree(RULES, batch)


@SETTINGS
@given(st.lists(patterns, min_size=1, max_size=6), st.lists(events, min_size=1, max_size=6))
def test_machine_with_a_tiny_memo_agrees_with_reference(
    rules: list[dict[str, Any]], batch: list[dict[str, Any]]
) -> None:
    with mock.patch.object(machine_module, "_MEMO_SIZE", 1):
        _agree({f"r{i}": p for i, p in enumerate(rules)}, batch)


def test_several_anything_but_in_one_field() -> None:
    # each anything-but excludes its own values: 1 is not "a", so the first one matches it
    rules = {"r": {"g": [{"anything-but": "a"}, {"anything-but": [1, 2]}]}}
    _agree(rules, [{"g": 1}, {"g": "a"}, {"g": [1, 1]}, {"g": ["a", 2]}, {"g": 3}])


def test_exists_false_branches() -> None:
    rules: dict[str, Any] = {
        "no-a": {"a": [{"exists": False}]},
        "no-a-no-b": {"a": [{"exists": False}], "b": [{"exists": False}]},
        "null-or-no-a": {"a": [None, {"exists": False}]},
        "x-and-no-a": {"x": ["1"], "a": [{"exists": False}]},
        "or": {"$or": [{"a": [{"exists": False}]}, {"b": ["2"]}]},
    }
    batch: list[dict[str, Any]] = [
        {},
        {"a": None},
        {"a": 1},
        {"b": "2"},
        {"x": "1"},
        {"x": "1", "a": []},
        {"x": "1", "a": {}},
        {"a": [{"q": 1}]},
        {"x": "1", "b": "2", "a": None},
    ]
    _agree(rules, batch)


def test_array_recheck_searches_only_fields_inside_arrays() -> None:
    rules: dict[str, Any] = {
        "same-element": {"s": ["x"], "p": {"id": ["a"], "t": [{"numeric": [">", 100]}]}},
        "one-inside": {"s": ["x"], "p": {"id": ["a"]}},
        "absent-inside": {"s": ["x"], "p": {"id": ["a"], "err": [{"exists": False}]}},
        "outside-absent": {"p": {"id": ["a"]}, "q": [{"exists": False}]},
    }
    batch: list[dict[str, Any]] = [
        {"s": "x", "p": [{"id": "a", "t": 50}, {"id": "b", "t": 150}]},
        {"s": "x", "p": [{"id": "a", "t": 150}]},
        {"s": "x", "p": [{"id": "a", "err": 1}, {"id": "b"}]},
        {"s": "x", "p": [{"id": "a"}, {"id": "b", "err": 1}]},
        {"s": "x", "p": [[{"id": "a", "t": 101}], {"id": "a"}], "q": [{"r": 1}]},
        {"s": "x", "p": {"id": "a", "t": 150}, "q": 1},
    ]
    _agree(rules, batch)


def test_branches_are_anchored_on_rare_predicates() -> None:
    # 3,000 rules share the source: anchored on their ranges, an event only checks the rules
    # whose range holds it, not all 3,000
    rules = {f"r{i}": {"source": ["x"], "n": [{"numeric": [">", i]}]} for i in range(3000)}
    machine = RuleMatcher.build(rules)
    checks: list[Any] = []
    scan({"source": "x", "n": 10}, machine._tree, checks, {}, {})
    assert len(checks) == 10
    assert machine.match({"source": "x", "n": 10}) == [f"r{i}" for i in range(10)]
    assert machine.match({"source": "y", "n": 10}) == []


_octets = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["", "00", "01", "007", "+1", " 1", "1_0", "٣", "a"]),
)


@SETTINGS
@given(st.one_of(st.lists(_octets, min_size=3, max_size=5).map(".".join), st.text(max_size=12)))
def test_event_ip_fast_path_decides_like_ip_bytes(text: str) -> None:
    try:
        expected = ip_bytes(text) if text and ("." in text or ":" in text) else None
    except IpError:
        expected = None
    assert event_ip.__wrapped__(text) == expected
