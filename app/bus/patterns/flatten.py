"""Turning an event (a parsed JSON object) into leaf fields, the way event-ruler sees it.

An event is matched as a list of *fields*: the dot-joined path of each leaf value and the value
(event-ruler joins with ``.``, so ``{"a": {"b": 1}}`` and ``{"a.b": 1}`` give the same field).
Arrays are "crushed out": every element of an array is a value of the array's own path. Empty
arrays and empty objects give no field at all.

For array consistency (event-ruler's ``ArrayMembership``) each array gets an id, and a value that
lies inside an *object or array element* of an array records ``(array id, element index)``.
Scalar elements do not record the array they sit in (event-ruler does the same), so two
values of one field never conflict.

``scan`` is the form used on every event by the compiled matcher: it walks the event once and
looks every leaf value up in its path's table as it goes, so no per-path value lists are built.
``flatten`` gives the values per path and, for paths whose values lie inside object/array
elements of arrays, how many such values there are. ``flatten_fields`` records the full
membership of every value and is used only when array consistency decides. All three only
descend where some rule looks, guided by a tree built from the rules' paths, and read an event
the same way (``tests/unit/bus/patterns/test_scan.py`` checks ``scan`` against ``flatten``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from app.bus.patterns.matchers import FALSE, NAN, TRUE, BigNum, Value, norm

Membership: TypeAlias = tuple[tuple[int, int], ...]
Fields: TypeAlias = dict[str, list[tuple[Value, Membership]]]
# event key -> (the dot-joined path it leads to, the tree below it)
PathTree: TypeAlias = dict[str, tuple[str, "PathTree"]]
# What ``scan`` does with the values of one path: (table of results by value, function computing
# (and caching) a result missing from the table or None, whether to count the path's values).
Lookup: TypeAlias = tuple[dict[Value, Any], Callable[[Value], Any] | None, bool]
# event key -> (path, tree below, table, compute, count): a PathTree with each path's Lookup
ScanTree: TypeAlias = dict[
    str, tuple[str, "ScanTree", dict[Value, Any], Callable[[Value], Any] | None, bool]
]


def path_tree(paths: Iterable[str]) -> PathTree:
    """The keys flattening must follow to reach ``paths``.

    Since paths are dot-joined, the event keys ``a``, ``b`` and the single key ``a.b`` reach
    the same path ``a.b``; the tree holds every such grouping of a path's segments.
    """
    tree: PathTree = {}
    for path in paths:
        _insert(tree, path.split("."), "")
    return tree


def _insert(node: PathTree, segments: list[str], base: str) -> None:
    for j in range(1, len(segments) + 1):
        key = ".".join(segments[:j])
        entry = node.get(key)
        if entry is None:
            entry = node[key] = (base + key, {})
        if j < len(segments):
            _insert(entry[1], segments[j:], entry[0] + ".")


def flatten(
    event: Mapping[str, object], tree: PathTree | None = None
) -> tuple[dict[str, list[Value]], dict[str, int]]:
    """Values per path, plus the count of values per path that sit inside array elements.

    With ``tree`` only the paths in it are produced; without, every leaf is.
    """
    values: dict[str, list[Value]] = {}
    in_arrays: dict[str, int] = {}
    if tree is None:
        for path, entries in flatten_fields(event).items():
            values[path] = [v for v, _ in entries]
            count = sum(1 for _, m in entries if m)
            if count:
                in_arrays[path] = count
        return values, in_arrays
    _object(event, tree, values, in_arrays, False)
    return values, in_arrays


def _object(
    obj: Mapping[str, object],
    tree: PathTree,
    values: dict[str, list[Value]],
    in_arrays: dict[str, int],
    nested: bool,
) -> None:
    get = tree.get
    for key, v in obj.items():
        entry = get(key)
        if entry is None:
            if type(key) is str:
                continue
            entry = get(str(key))  # not JSON, but Python dicts may have such keys
            if entry is None:
                continue
        t = type(v)
        if t is str:
            nv: Value = v  # type: ignore[assignment]
        elif t is dict:
            if entry[1]:
                _object(v, entry[1], values, in_arrays, nested)  # type: ignore[arg-type]
            continue
        elif t is float:
            nv = v if v == v else NAN  # type: ignore[assignment]
        elif t is int:
            try:
                nv = float(v)  # type: ignore[arg-type]
            except OverflowError:
                nv = BigNum(v)  # type: ignore[arg-type]
        elif t is list:
            _array(v, entry, values, in_arrays, nested)  # type: ignore[arg-type]
            continue
        elif t is bool:
            nv = TRUE if v else FALSE
        elif v is None:
            nv = None
        elif isinstance(v, Mapping):
            if entry[1]:
                _object(v, entry[1], values, in_arrays, nested)
            continue
        elif isinstance(v, tuple):
            _array(v, entry, values, in_arrays, nested)
            continue
        else:
            try:
                nv = norm(v)
            except TypeError:
                continue  # not JSON: ignored
        path = entry[0]
        found = values.get(path)
        if found is None:
            values[path] = [nv]
        else:
            found.append(nv)
        if nested:
            in_arrays[path] = in_arrays.get(path, 0) + 1


def _array(
    arr: list[object] | tuple[object, ...],
    entry: tuple[str, PathTree],
    values: dict[str, list[Value]],
    in_arrays: dict[str, int],
    nested: bool,
) -> None:
    path, subtree = entry
    for v in arr:
        t = type(v)
        if t is str:
            nv: Value = v  # type: ignore[assignment]
        elif t is dict:
            if subtree:
                _object(v, subtree, values, in_arrays, True)  # type: ignore[arg-type]
            continue
        elif t is list:
            _array(v, entry, values, in_arrays, True)  # type: ignore[arg-type]
            continue
        elif isinstance(v, Mapping):
            if subtree:
                _object(v, subtree, values, in_arrays, True)
            continue
        elif isinstance(v, tuple):
            _array(v, entry, values, in_arrays, True)
            continue
        else:
            try:
                nv = norm(v)
            except TypeError:
                continue
        found = values.get(path)
        if found is None:
            values[path] = [nv]
        else:
            found.append(nv)
        if nested:
            in_arrays[path] = in_arrays.get(path, 0) + 1


def flatten_fields(event: Mapping[str, object], tree: PathTree | None = None) -> Fields:
    """Every leaf value per path with its array membership (only paths in ``tree``, if given)."""
    fields: Fields = {}
    _fields_object(event, "", tree, fields, (), [0])
    return fields


def _fields_object(
    obj: Mapping[str, object],
    base: str,
    tree: PathTree | None,
    fields: Fields,
    membership: Membership,
    counter: list[int],
) -> None:
    for key, v in obj.items():
        key = key if type(key) is str else str(key)
        if tree is None:
            path, subtree = base + key, None
        else:
            entry = tree.get(key)
            if entry is None:
                continue
            path, subtree = entry
        t = type(v)
        if t is dict or (t is not str and t is not list and isinstance(v, Mapping)):
            _fields_object(v, path + ".", subtree, fields, membership, counter)  # type: ignore[arg-type]
        elif t is list or isinstance(v, tuple):
            _fields_array(v, path, subtree, fields, membership, counter)  # type: ignore[arg-type]
        else:
            _add(fields, path, v, membership)


def _fields_array(
    arr: list[object] | tuple[object, ...],
    path: str,
    tree: PathTree | None,
    fields: Fields,
    membership: Membership,
    counter: list[int],
) -> None:
    array_id = counter[0]
    counter[0] += 1
    base = path + "."
    for index, v in enumerate(arr):
        t = type(v)
        if t is dict or (t is not str and t is not list and isinstance(v, Mapping)):
            _fields_object(v, base, tree, fields, (*membership, (array_id, index)), counter)  # type: ignore[arg-type]
        elif t is list or isinstance(v, tuple):
            _fields_array(v, path, tree, fields, (*membership, (array_id, index)), counter)  # type: ignore[arg-type]
        else:
            _add(fields, path, v, membership)


def _add(fields: Fields, path: str, v: object, membership: Membership) -> None:
    t = type(v)
    if t is str:
        nv: Value = v  # type: ignore[assignment]
    elif t is float:
        nv = v if v == v else NAN  # type: ignore[assignment]
    else:
        try:
            nv = norm(v)
        except TypeError:
            return
    found = fields.get(path)
    if found is None:
        fields[path] = [(nv, membership)]
    else:
        found.append((nv, membership))


# --------------------------------------------------------------------------------------------
# scan: flatten and look up in one walk (the compiled matcher's hot path)
# --------------------------------------------------------------------------------------------
_NO_LOOKUP: Lookup = ({}, None, False)


def scan_tree(lookups: Mapping[str, Lookup]) -> ScanTree:
    """The ``path_tree`` of ``lookups``' paths, each node carrying its path's ``Lookup``.

    Nodes that only lead to deeper paths get an empty table that is never written to.
    """
    return _scan_node(path_tree(lookups), lookups)


def _scan_node(tree: PathTree, lookups: Mapping[str, Lookup]) -> ScanTree:
    return {
        key: (path, _scan_node(sub, lookups), *lookups.get(path, _NO_LOOKUP))
        for key, (path, sub) in tree.items()
    }


def scan(
    event: Mapping[str, object],
    tree: ScanTree,
    found: list[Any],
    counts: dict[str, int],
    in_arrays: dict[str, int],
) -> int:
    """Look every leaf value at a path of ``tree`` up in that path's table, in one walk.

    A table maps a value to a pair ``(bits, items)`` (a falsy result means "nothing"); the
    result is the union (``|``) of the ``bits`` of all values, and the ``items`` are added to
    ``found``. A value missing from the table is passed to the path's compute function, if any,
    which returns such a pair. ``counts`` gets the number of values of every path whose node
    asks for it, ``in_arrays`` the number of values per path that sit inside object/array
    elements of arrays (as ``flatten`` reports them). Values are read exactly as ``flatten``
    reads them.
    """
    return _scan_object(event, tree, 0, found, counts, in_arrays, False)


def _scan_object(
    obj: Mapping[str, object],
    tree: ScanTree,
    holds: int,
    found: list[Any],
    counts: dict[str, int],
    in_arrays: dict[str, int],
    nested: bool,
) -> int:
    get = tree.get
    for key, v in obj.items():
        node = get(key)
        if node is None:
            if type(key) is str:
                continue
            node = get(str(key))  # not JSON, but Python dicts may have such keys
            if node is None:
                continue
        t = type(v)
        if t is str:
            nv: Value = v  # type: ignore[assignment]
        elif t is dict:
            if node[1]:
                holds = _scan_object(v, node[1], holds, found, counts, in_arrays, nested)  # type: ignore[arg-type]
            continue
        elif t is float:
            nv = v if v == v else NAN  # type: ignore[assignment]
        elif t is int:
            try:
                nv = float(v)  # type: ignore[arg-type]
            except OverflowError:
                nv = BigNum(v)  # type: ignore[arg-type]
        elif t is list:
            holds = _scan_array(v, node, holds, found, counts, in_arrays, nested)  # type: ignore[arg-type]
            continue
        elif t is bool:
            nv = TRUE if v else FALSE
        elif v is None:
            nv = None
        elif isinstance(v, Mapping):
            if node[1]:
                holds = _scan_object(v, node[1], holds, found, counts, in_arrays, nested)
            continue
        elif isinstance(v, tuple):
            holds = _scan_array(v, node, holds, found, counts, in_arrays, nested)
            continue
        else:
            try:
                nv = norm(v)
            except TypeError:
                continue  # not JSON: ignored
        hit = node[2].get(nv)
        if hit is None and node[3] is not None:
            hit = node[3](nv)
        if hit:
            holds |= hit[0]
            if hit[1]:
                found += hit[1]
        if node[4]:
            counts[node[0]] = counts.get(node[0], 0) + 1
        if nested:
            in_arrays[node[0]] = in_arrays.get(node[0], 0) + 1
    return holds


def _scan_array(
    arr: list[object] | tuple[object, ...],
    node: tuple[str, ScanTree, dict[Value, Any], Callable[[Value], Any] | None, bool],
    holds: int,
    found: list[Any],
    counts: dict[str, int],
    in_arrays: dict[str, int],
    nested: bool,
) -> int:
    path, subtree, table, compute, count = node
    for v in arr:
        t = type(v)
        if t is str:
            nv: Value = v  # type: ignore[assignment]
        elif t is dict:
            if subtree:
                holds = _scan_object(v, subtree, holds, found, counts, in_arrays, True)  # type: ignore[arg-type]
            continue
        elif t is list:
            holds = _scan_array(v, node, holds, found, counts, in_arrays, True)  # type: ignore[arg-type]
            continue
        elif isinstance(v, Mapping):
            if subtree:
                holds = _scan_object(v, subtree, holds, found, counts, in_arrays, True)
            continue
        elif isinstance(v, tuple):
            holds = _scan_array(v, node, holds, found, counts, in_arrays, True)
            continue
        else:
            try:
                nv = norm(v)
            except TypeError:
                continue
        hit = table.get(nv)
        if hit is None and compute is not None:
            hit = compute(nv)
        if hit:
            holds |= hit[0]
            if hit[1]:
                found += hit[1]
        if count:
            counts[path] = counts.get(path, 0) + 1
        if nested:
            in_arrays[path] = in_arrays.get(path, 0) + 1
    return holds
