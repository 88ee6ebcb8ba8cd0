"""Hypothesis strategies: valid patterns and events over a small shared vocabulary.

The vocabularies are small on purpose so that generated patterns and events meet often
(same keys, overlapping values), including numbers vs strings, null vs missing, arrays of
objects and empty containers.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

KEYS = ["a", "b", "c"]
NESTED = "d"

STRINGS = ["x", "y", "X", "xy", "xY", "", "x*y", "10.0.0.1", "10.0.1.7", "::1", "0:0:0:0:0:0:0:1"]
NUMBERS: list[Any] = [0, 1, 1.5, 300, 300.0, 3e2, -2, 5000000000]

scalars = st.one_of(
    st.sampled_from(STRINGS),
    st.sampled_from(NUMBERS),
    st.booleans(),
    st.none(),
)


def _event_values(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from([*KEYS, NESTED]), children, max_size=3),
    )


event_values = st.recursive(scalars, _event_values, max_leaves=10)
_plain_events = st.dictionaries(st.sampled_from([*KEYS, NESTED]), event_values, max_size=4)

# Arrays of objects under "d": what array consistency is about.
_element = st.dictionaries(
    st.sampled_from([*KEYS, NESTED]),
    st.one_of(
        scalars, st.lists(scalars, max_size=2), st.dictionaries(st.sampled_from(KEYS), scalars)
    ),
    max_size=3,
)
_array_events = st.builds(
    lambda top, elements: {**top, NESTED: elements},
    st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2),
    st.lists(st.one_of(_element, st.lists(_element, max_size=2)), max_size=4),
)
events = st.one_of(_plain_events, _array_events)

LEAF_SPECS: list[Any] = [
    *STRINGS,
    *NUMBERS,
    True,
    False,
    None,
    {"prefix": "x"},
    {"prefix": ""},
    {"prefix": {"equals-ignore-case": "X"}},
    {"suffix": "y"},
    {"suffix": {"equals-ignore-case": "Y"}},
    {"equals-ignore-case": "XY"},
    {"wildcard": "x*"},
    {"wildcard": "*y"},
    {"wildcard": "*"},
    {"wildcard": "x\\*y"},
    {"wildcard": "*.0.*"},
    {"exactly": "x"},
    {"anything-but": "x"},
    {"anything-but": ["x", "y"]},
    {"anything-but": 1},
    {"anything-but": [0, 300]},
    {"anything-but": {"prefix": "x"}},
    {"anything-but": {"suffix": ["y", "Y"]}},
    {"anything-but": {"equals-ignore-case": "X"}},
    {"anything-but": {"equals-ignore-case": ["xy", "Y"]}},
    {"anything-but": {"wildcard": "x*"}},
    {"anything-but": {"wildcard": ["*y", "1*"]}},
    {"numeric": [">", 0]},
    {"numeric": [">=", 0, "<", 300]},
    {"numeric": ["=", 300]},
    {"numeric": ["<=", 1.5]},
    {"numeric": [">", -3, "<=", 1]},
    {"exists": True},
    {"exists": False},
    {"cidr": "10.0.0.0/24"},
    {"cidr": "10.0.0.9/31"},
    {"cidr": "::/64"},
]

leaf_lists = st.lists(st.sampled_from(LEAF_SPECS), min_size=1, max_size=3)


def _pattern_objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    value: st.SearchStrategy[Any] = leaf_lists
    if depth > 0:
        value = st.one_of(leaf_lists, leaf_lists, st.deferred(lambda: _pattern_objects(depth - 1)))
    base = st.dictionaries(st.sampled_from([*KEYS, NESTED]), value, min_size=1, max_size=2)
    if depth == 0:
        return base
    with_or = st.builds(
        lambda obj, alts: {**obj, "$or": alts},
        st.dictionaries(st.sampled_from([*KEYS, NESTED]), value, max_size=2),
        st.lists(st.deferred(lambda: _pattern_objects(depth - 1)), min_size=2, max_size=3),
    )
    return st.one_of(base, base, with_or)


patterns = _pattern_objects(2)


def _leaf_paths(value: Any, path: tuple[str, ...], out: dict[tuple[str, ...], list[Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _leaf_paths(v, (*path, k), out)
    elif isinstance(value, list):
        for v in value:
            _leaf_paths(v, path, out)
    elif path:
        out.setdefault(path, []).append(value)


def _near(value: Any) -> list[Any]:
    """Specs that match ``value`` or just miss it."""
    specs: list[Any] = [value, {"exists": True}, {"exists": False}, {"anything-but": "x"}]
    if isinstance(value, str):
        specs += [
            {"prefix": value[:1]},
            {"suffix": value[-1:]},
            {"equals-ignore-case": value.upper()},
            {"anything-but": value},
            {"anything-but": {"prefix": value[:1] or "q"}},
            {"wildcard": (value[:1] + "*") if value else "*"},
            value + "z",
        ]
    elif isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e9:
        specs += [
            {"numeric": ["=", value]},
            {"numeric": [">", value]},
            {"numeric": [">=", value]},
            {"anything-but": value},
            {"anything-but": [value, 7]},
            float(value),
        ]
    return specs


def _nest(path: tuple[str, ...], leaf: Any) -> dict[str, Any]:
    obj: Any = leaf
    for key in reversed(path):
        obj = {key: obj}
    return obj  # type: ignore[no-any-return]


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if k in out and isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = _merge(out[k], v)
        elif k not in out:
            out[k] = v
    return out


@st.composite
def event_and_pattern(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """An event and a pattern built from 1-3 of its paths (plus, sometimes, a missing one)."""
    event = draw(events)
    leaves: dict[tuple[str, ...], list[Any]] = {}
    _leaf_paths(event, (), leaves)
    paths = list(leaves)
    chosen = draw(st.lists(st.sampled_from(paths), max_size=3, unique=True)) if paths else []
    pattern: dict[str, Any] = {}
    for path in chosen:
        value = draw(st.sampled_from(leaves[path]))
        specs = draw(st.lists(st.sampled_from(_near(value)), min_size=1, max_size=2))
        pattern = _merge(pattern, _nest(path, specs))
    if not pattern or draw(st.booleans()):
        extra = draw(st.sampled_from([("zz",), (NESTED, "zz"), (NESTED, "a"), ("a",)]))
        spec = draw(st.sampled_from([{"exists": False}, {"exists": True}, "x", 1]))
        pattern = _merge(pattern, _nest(extra, [spec]))
    return event, pattern
