"""flatten.py: events into dot-joined leaf fields, array membership, pruning."""

from __future__ import annotations

from typing import Any

from app.bus.patterns.flatten import flatten, flatten_fields, path_tree
from app.bus.patterns.matchers import FALSE, NAN, TRUE, BigNum

EVENT: dict[str, Any] = {
    "source": "aws.ec2",
    "resources": ["r1", "r2"],
    "detail": {
        "n": 3,
        "f": 2.5,
        "t": True,
        "z": None,
        "empty": [],
        "obj": {},
        "probes": [{"id": "p1", "t": 20}, {"id": "p2", "t": 30, "tags": ["a", "b"]}],
        "grid": [[{"v": 1}], [{"v": 2}, {"v": 3}]],
    },
}


def test_flatten_everything() -> None:
    values, in_arrays = flatten(EVENT)
    assert values == {
        "source": ["aws.ec2"],
        "resources": ["r1", "r2"],
        "detail.n": [3.0],
        "detail.f": [2.5],
        "detail.t": [TRUE],
        "detail.z": [None],
        "detail.probes.id": ["p1", "p2"],
        "detail.probes.t": [20.0, 30.0],
        "detail.probes.tags": ["a", "b"],
        "detail.grid.v": [1.0, 2.0, 3.0],
    }
    # values inside object elements of arrays are counted; scalar elements are not
    assert in_arrays == {
        "detail.probes.id": 2,
        "detail.probes.t": 2,
        "detail.probes.tags": 2,
        "detail.grid.v": 3,
    }


def test_flatten_fields_memberships() -> None:
    fields = flatten_fields(EVENT)
    assert fields["resources"] == [("r1", ()), ("r2", ())]
    probes_array = fields["detail.probes.id"][0][1][0][0]
    assert fields["detail.probes.id"] == [
        ("p1", ((probes_array, 0),)),
        ("p2", ((probes_array, 1),)),
    ]
    assert [m for _, m in fields["detail.probes.tags"]] == [((probes_array, 1),)] * 2
    grid = fields["detail.grid.v"]
    outer = grid[0][1][0][0]
    assert grid[0][1][0] == (outer, 0)
    assert grid[1][1][0] == (outer, 1)
    assert grid[2][1][0] == (outer, 1)
    assert grid[1][1][1][1] == 0
    assert grid[2][1][1][1] == 1
    assert "detail.empty" not in fields
    assert "detail.obj" not in fields


def test_pruning_with_a_path_tree() -> None:
    tree = path_tree({"source", "detail.probes.t"})
    values, in_arrays = flatten(EVENT, tree)
    assert values == {"source": ["aws.ec2"], "detail.probes.t": [20.0, 30.0]}
    assert in_arrays == {"detail.probes.t": 2}
    assert set(flatten_fields(EVENT, tree)) == {"source", "detail.probes.t"}


def test_keys_with_dots_join_like_nested_keys() -> None:
    tree = path_tree({"a.b.c"})
    for event in ({"a": {"b": {"c": 1}}}, {"a.b": {"c": 1}}, {"a": {"b.c": 1}}, {"a.b.c": 1}):
        assert flatten(event, tree)[0] == {"a.b.c": [1.0]}, event
        assert flatten(event)[0] == {"a.b.c": [1.0]}
        assert list(flatten_fields(event, tree)) == ["a.b.c"]


def test_path_tree_groupings() -> None:
    tree = path_tree({"a.b"})
    assert set(tree) == {"a", "a.b"}
    assert tree["a"][0] == "a"
    assert tree["a"][1]["b"][0] == "a.b"
    assert tree["a.b"] == ("a.b", {})


def test_unusual_values() -> None:
    event = {
        "big": 10**400,
        "nan": float("nan"),
        "f": False,
        "tup": ("x", {"y": 1}),
        "obj": object(),
        "ok": 1,
        "arr": [object(), 1, True, None, (2,)],
    }
    values, in_arrays = flatten(
        event, path_tree({"big", "nan", "f", "tup", "tup.y", "obj", "ok", "arr"})
    )
    assert values == {
        "big": [BigNum(10**400)],
        "nan": [NAN],
        "f": [FALSE],
        "tup": ["x"],
        "tup.y": [1.0],
        "ok": [1.0],
        "arr": [1.0, TRUE, None, 2.0],
    }
    assert in_arrays == {"tup.y": 1, "arr": 1}
    assert flatten(event)[0]["ok"] == [1.0]


def test_non_string_keys() -> None:
    event = {1: "x", "a": {2: "y"}}
    assert flatten(event, path_tree({"1", "a.2"}))[0] == {"1": ["x"], "a.2": ["y"]}  # type: ignore[arg-type]
    assert flatten_fields(event, path_tree({"1"})) == {"1": [("x", ())]}  # type: ignore[arg-type]


def test_mappings_that_are_not_dicts() -> None:
    from types import MappingProxyType

    event = {"d": MappingProxyType({"k": "v"}), "l": [MappingProxyType({"k": "w"})]}
    assert flatten(event, path_tree({"d.k", "l.k"}))[0] == {"d.k": ["v"], "l.k": ["w"]}
