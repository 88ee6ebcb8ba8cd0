"""``Pattern``: a validated event pattern, compiled into branches of field constraints.

A pattern compiles, like event-ruler's ``JsonRuleCompiler``, into *branches* (``$or`` is
multiplied out): each branch maps dot-joined field paths to a ``Constraint``. An event matches
the pattern when any branch matches, and a branch matches when its fields can be satisfied in
order of their paths (sorted as Java sorts strings) with *array-consistent* values:

* a field with values is satisfied by one value that some matcher accepts and whose array
  membership agrees with the values already chosen for earlier fields (values from different
  elements of the same array never combine);
* ``{"exists": false}`` is satisfied when no value of the field agrees with the values already
  chosen (in particular when the field is missing, holds an object, or holds ``[]``).

That order-dependent reading of ``exists: false`` is event-ruler's (``ACFinder``) and we keep it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from app.bus.patterns.errors import InvalidEventPattern
from app.bus.patterns.flatten import Fields, PathTree, flatten_fields, path_tree
from app.bus.patterns.matchers import (
    FALSE,
    TRUE,
    AnythingBut,
    AnythingButIgnoreCase,
    AnythingButPrefix,
    AnythingButSuffix,
    AnythingButWildcard,
    Cidr,
    Constraint,
    EqualsIgnoreCase,
    Exact,
    Exists,
    IpExact,
    Matcher,
    Numeric,
    Prefix,
    Suffix,
    Wildcard,
    event_ip,
    fold,
    norm,
    wildcard_segments,
)
from app.bus.patterns.validate import (
    DEFAULT_LIMITS,
    OR,
    PatternLimits,
    check_limits,
    check_text,
    parse_cidr,
)


@dataclass(frozen=True, slots=True)
class Key:
    """One field of a branch."""

    path: str
    constraint: Constraint


Branch: TypeAlias = tuple[Key, ...]


def java_order(path: str) -> bytes:
    """Sort key that orders strings like Java's ``String.compareTo`` (UTF-16 code units)."""
    return path.encode("utf-16-be", "surrogatepass")


class Pattern:
    """A valid event pattern. Immutable; equal when the canonical JSON text is equal.

    ``text`` is the pattern as given, ``source`` the same JSON without insignificant white
    space (keys keep their order: with ``$or`` the order of keys can matter), ``branches`` the
    compiled alternatives.
    """

    __slots__ = ("_hash", "branches", "paths", "source", "text", "tree")

    text: str
    source: str
    branches: tuple[Branch, ...]
    paths: frozenset[str]
    tree: PathTree
    _hash: int

    def __init__(self, text: str, source: str, branches: tuple[Branch, ...]) -> None:
        paths = frozenset(key.path for branch in branches for key in branch)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "branches", branches)
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "tree", path_tree(paths))
        object.__setattr__(self, "_hash", hash(source))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Pattern is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.source == self.source

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Pattern({self.source})"

    def __str__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self.text,))

    def to_dict(self) -> dict[str, Any]:
        """The pattern as a fresh JSON object."""
        value: dict[str, Any] = json.loads(self.source)
        return value


def _restore(text: str) -> Pattern:
    limits = PatternLimits(max_length=len(text), max_combinations=10**9, max_depth=10**6)
    return parse_pattern(text, limits=limits)


def parse_pattern(
    pattern: str | bytes | Mapping[str, Any] | Pattern,
    *,
    limits: PatternLimits = DEFAULT_LIMITS,
) -> Pattern:
    """Validate and compile a pattern given as JSON text or as a parsed JSON object.

    Raises ``InvalidEventPattern`` with EventBridge's reason (and position) when the pattern
    would be rejected by ``PutRule``/``TestEventPattern``.
    """
    if isinstance(pattern, Pattern):
        return pattern
    if isinstance(pattern, bytes | bytearray):
        try:
            text = bytes(pattern).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidEventPattern(f"Invalid UTF-8 in event pattern: {e}") from None
    elif isinstance(pattern, str):
        text = pattern
    elif isinstance(pattern, Mapping):
        try:
            text = json.dumps(pattern, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise InvalidEventPattern(f"Event pattern is not JSON: {e}") from None
    else:
        raise TypeError(f"an event pattern is JSON text or a mapping, not {type(pattern)}")
    check_text(text, limits)
    obj = _decode(text)
    check_limits(obj, limits)
    source = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return Pattern(text, source, compile_branches(obj))


def _merge_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Duplicate keys: objects merge (their fields all count), anything else: the last wins."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged = dict(old)
            merged.update(_merge_pairs(list(value.items())))
            value = merged
        out.pop(key, None)
        out[key] = value
    return out


def _decode(text: str) -> dict[str, Any]:
    start = len(text) - len(text.lstrip(" \t\r\n"))
    obj, _ = json.JSONDecoder(object_pairs_hook=_merge_pairs).raw_decode(text, start)
    if not isinstance(obj, dict):  # pragma: no cover - check_text guarantees an object
        raise InvalidEventPattern("Filter is not an object")
    return obj


# --------------------------------------------------------------------------------------------
# Compiling a (valid) pattern object into branches
# --------------------------------------------------------------------------------------------
def compile_branches(obj: Mapping[str, Any]) -> tuple[Branch, ...]:
    rules = _object(obj, (), [])
    out: dict[Branch, None] = {}
    for rule in rules:
        branch = tuple(Key(path, rule[path]) for path in sorted(rule, key=java_order))
        out.setdefault(branch, None)
    return tuple(out)


def _object(
    obj: Mapping[str, Any], path: tuple[str, ...], rules: list[dict[str, Constraint]]
) -> list[dict[str, Constraint]]:
    # The same algorithm as event-ruler's parseObject/parseIntoOrRelationship: $or forks every
    # alternative built so far; later fields are added to every alternative, a path set twice
    # in one alternative keeps the later value.
    for key, value in obj.items():
        if key == OR:
            current = [dict(rule) for rule in rules]
            forked: list[dict[str, Constraint]] = []
            for sub in value:
                base = [dict(rule) for rule in current] or [{}]
                forked.extend(_object(sub, path, base))
            rules = forked
        elif isinstance(value, Mapping):
            rules = _object(value, (*path, key), rules)
        else:
            name = ".".join((*path, key))
            compiled = compile_constraint(value)
            if not rules:
                rules = [{}]
            for rule in rules:
                rule[name] = compiled
    return rules


def compile_constraint(items: list[Any]) -> Constraint:
    """The list of values/operators of one field (already validated)."""
    matchers: dict[Matcher, None] = {}
    absent = False
    for item in items:
        if isinstance(item, dict):
            ((op, arg),) = item.items()
            if op == "exists":
                if arg:
                    matchers[Exists()] = None
                else:
                    absent = True
                continue
            matchers[_operator(op, arg)] = None
        elif isinstance(item, str):
            ip = event_ip(item)
            matchers[IpExact(item, ip[0], ip[1]) if ip else Exact(item)] = None
        elif isinstance(item, bool):
            matchers[Exact(TRUE if item else FALSE)] = None
        else:
            matchers[Exact(norm(item))] = None
    return Constraint(frozenset(matchers), absent)


def _wildcard(text: str) -> Wildcard:
    return Wildcard(text, wildcard_segments(text))


def _strings(arg: Any) -> list[str]:
    return [arg] if isinstance(arg, str) else list(arg)


def _operator(op: str, arg: Any) -> Matcher:
    if op == "exactly":
        return Exact(arg)
    if op == "prefix":
        if isinstance(arg, dict):
            return Prefix(fold(arg["equals-ignore-case"]), ignore_case=True)
        return Prefix(arg)
    if op == "suffix":
        if isinstance(arg, dict):
            return Suffix(fold(arg["equals-ignore-case"]), ignore_case=True)
        return Suffix(arg)
    if op == "equals-ignore-case":
        return EqualsIgnoreCase(fold(arg))
    if op == "wildcard":
        return _wildcard(arg)
    if op == "numeric":
        return _numeric(arg)
    if op == "cidr":
        bits, lo, hi = parse_cidr(arg)
        return Cidr(arg, bits, lo, hi)
    if op == "anything-but":
        return _anything_but(arg)
    raise AssertionError(f"unvalidated operator {op}")  # pragma: no cover


def _numeric(arg: list[Any]) -> Numeric:
    inf = float("inf")
    lo, lo_open, hi, hi_open = -inf, False, inf, False
    for i in range(0, len(arg), 2):
        operator, value = arg[i], float(arg[i + 1])
        if operator == "=":
            lo = hi = value
        elif operator in (">", ">="):
            lo, lo_open = value, operator == ">"
        else:
            hi, hi_open = value, operator == "<"
    return Numeric(lo, lo_open, hi, hi_open)


def _anything_but(arg: Any) -> Matcher:
    if isinstance(arg, dict):
        ((kind, value),) = arg.items()
        if kind == "equals-ignore-case":
            return AnythingButIgnoreCase(frozenset(fold(s) for s in _strings(value)))
        if kind == "prefix":
            return AnythingButPrefix(tuple(dict.fromkeys(_strings(value))))
        if kind == "suffix":
            return AnythingButSuffix(tuple(dict.fromkeys(_strings(value))))
        return AnythingButWildcard(tuple(_wildcard(s) for s in dict.fromkeys(_strings(value))))
    values = arg if isinstance(arg, list) else [arg]
    return AnythingBut(frozenset(norm(v) for v in values))


# --------------------------------------------------------------------------------------------
# Matching one pattern
# --------------------------------------------------------------------------------------------
def _merge(acc: dict[int, int], membership: tuple[tuple[int, int], ...]) -> dict[int, int] | None:
    merged: dict[int, int] | None = None
    for array_id, index in membership:
        seen = acc.get(array_id)
        if seen is None:
            if merged is None:
                merged = dict(acc)
            merged[array_id] = index
        elif seen != index:
            return None
    return acc if merged is None else merged


def _search(branch: Branch, i: int, fields: Fields, acc: dict[int, int]) -> bool:
    if i == len(branch):
        return True
    key = branch[i]
    entries = fields.get(key.path, ())
    constraint = key.constraint
    for value, membership in entries:
        if constraint.matches(value):
            merged = _merge(acc, membership) if membership else acc
            if merged is not None and _search(branch, i + 1, fields, merged):
                return True
    if constraint.absent:
        for _, membership in entries:
            if not membership or _merge(acc, membership) is not None:
                return False
        return _search(branch, i + 1, fields, acc)
    return False


def branch_matches(branch: Branch, fields: Fields) -> bool:
    """Whether one branch matches an event given as ``flatten_fields`` output."""
    return _search(branch, 0, fields, {})


def matches(pattern: Pattern, event: Mapping[str, Any]) -> bool:
    """Whether ``event`` (a parsed JSON object) matches ``pattern``, as ``TestEventPattern``."""
    if not isinstance(event, Mapping):
        raise TypeError("an event is a JSON object")
    fields = flatten_fields(event, pattern.tree)
    return any(_search(branch, 0, fields, {}) for branch in pattern.branches)


def test_event_pattern(
    pattern: str | Mapping[str, Any] | Pattern, event: Mapping[str, Any]
) -> bool:
    """``TestEventPattern``: validate ``pattern`` (raising ``InvalidEventPattern``), then match."""
    return matches(parse_pattern(pattern), event)


test_event_pattern.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
