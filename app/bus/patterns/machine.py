"""``RuleMatcher``: every rule compiled into one index, matched in one walk over the event.

Every branch of every rule (``$or`` multiplied out) is a set of field constraints; each distinct
(path, constraint) pair is a *predicate*. Matching an event takes two steps:

1. **Which predicates hold.** Each path some rule uses has one index over the predicates of
   all rules on that path: a dict for exact values, dicts keyed by prefix/suffix and by folded
   value, sorted boundaries (bisect) for numeric and CIDR ranges, precomputed exclusion sets for
   anything-but, wildcards filed under their literal head or tail. What a value leads to is
   precomputed as a ``_State`` and remembered per value (events repeat their sources, types,
   statuses...), so a value usually costs one dict lookup. The event is walked once
   (``flatten.scan``), every leaf value looked up as it is met.
2. **Which branches hold.** Each branch is filed under one *anchor*: its most selective
   predicate (exact values before ranges before anything-but/exists, then the predicate the
   fewest branches share: a project id before a source). Only branches whose anchor holds are
   checked, each with one AND of the bit masks of its other predicates and of those that hold.
   So the cost follows the event's values and the *partially matching* branches, not the
   number of rules.

``{"exists": false}`` (alone or next to values) holds when the path has no value, or when all
its values sit inside array elements (then the exact check below decides). A branch whose
fields meet inside arrays of objects (values inside array elements for two or more of its
fields, or an ``exists: false`` field with values inside array elements) is re-checked with the
exact, event-ruler-ordered search of ``pattern.branch_matches``: steps 1-2 ignore which array
element a value came from, so they give a superset of the matches.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, NamedTuple, TypeAlias, TypeVar

from app.bus.patterns.flatten import (
    Lookup,
    PathTree,
    ScanTree,
    flatten_fields,
    path_tree,
    scan,
    scan_tree,
)
from app.bus.patterns.matchers import (
    AnythingBut,
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
    Value,
    Wildcard,
    event_ip,
    wildcard_match,
)
from app.bus.patterns.pattern import Branch, Pattern, branch_matches, parse_pattern

K = TypeVar("K", bound=Hashable)
T = TypeVar("T", bound=Hashable)

_INF = float("inf")
# Above this many (region, target) entries a range index falls back to a sorted scan.
_MAX_REGION_ENTRIES = 200_000
# Each path remembers the outcome of up to this many values its patterns do not name (strings
# only up to _MEMO_LENGTH characters, so that the memory this takes stays small).
_MEMO_SIZE = 1024
_MEMO_LENGTH = 100
# How many path sets the array re-check remembers a PathTree for.
_MAX_TREES = 256

Range: TypeAlias = tuple[Any, bool, Any, bool, T]
# A branch to check: (branch number, bits of the predicates it needs besides its anchor). A
# branch with exists-false fields has the number -1 - i, ``i`` indexing ``RuleMatcher._absent``.
Check: TypeAlias = tuple[int, int]
# An exists-false field: (the bit of the predicate on its values, or 0; its path)
Either: TypeAlias = tuple[int, str]


class _State(NamedTuple):
    """What a value leads to (the same for all values satisfying the same predicates): the
    bits of the predicates it makes hold that some branch checks, and the branches it anchors,
    checked once the whole event is read."""

    needs: int = 0
    checks: tuple[Check, ...] = ()


# The outcome of a value that satisfies no predicate of its path (falsy, unlike any _State).
_NONE: tuple[()] = ()
Outcome: TypeAlias = "_State | tuple[()]"
StateOf: TypeAlias = Callable[[Iterable[int]], _State]
Merge: TypeAlias = Callable[[list[_State]], _State]
# A probe: the state a value leads to through one kind of constraint on a path, or None.
Probe: TypeAlias = Callable[[Value], "_State | None"]


class _Ranges(Generic[T]):
    """Targets per elementary interval between sorted boundaries (or a sorted scan)."""

    __slots__ = ("bounds", "linear", "regions")

    def __init__(self, ranges: list[Range[T]]) -> None:
        points = sorted(
            {r[0] for r in ranges if -_INF < r[0] < _INF}
            | {r[2] for r in ranges if -_INF < r[2] < _INF}
        )
        index = {p: i for i, p in enumerate(points)}
        last = 2 * len(points)
        spans: list[tuple[int, int, T]] = []
        total = 0
        for lo, lo_open, hi, hi_open, target in ranges:
            start = 0 if lo == -_INF else 2 * index[lo] + (2 if lo_open else 1)
            end = last if hi == _INF else 2 * index[hi] + (0 if hi_open else 1)
            if start <= end:
                spans.append((start, end, target))
                total += end - start + 1
        self.bounds = points
        self.linear: tuple[Range[T], ...] = ()
        self.regions: list[tuple[T, ...]] = []
        if total > _MAX_REGION_ENTRIES:
            self.linear = tuple(sorted(ranges, key=lambda r: r[0]))
            return
        regions: list[dict[T, None]] = [{} for _ in range(last + 1)]
        for start, end, target in spans:
            for r in range(start, end + 1):
                regions[r][target] = None
        self.regions = [tuple(r) for r in regions]

    def lookup(self, x: Any) -> tuple[T, ...]:
        if self.linear:
            return tuple(
                s
                for lo, lo_open, hi, hi_open, s in self.linear
                if (lo < x or (lo == x and not lo_open)) and (x < hi or (x == hi and not hi_open))
            )
        return self.regions[self.region(x)]

    def region(self, x: Any) -> int:
        """The index in ``regions`` of ``x`` (not for a linear scan)."""
        bounds = self.bounds
        i = bisect_left(bounds, x)
        if i < len(bounds) and bounds[i] == x:
            return 2 * i + 1
        return 2 * i

    def states(self, state_of: StateOf) -> Callable[[Any], _State | None]:
        """``x ->`` the state of the targets whose ranges hold ``x`` (None if there are none)."""
        if self.linear:
            lookup = self.lookup
            return lambda x: state_of(targets) if (targets := lookup(x)) else None  # type: ignore[arg-type]
        states = [state_of(r) if r else None for r in self.regions]  # type: ignore[arg-type]
        bounds = self.bounds
        n = len(bounds)

        def at(x: Any) -> _State | None:
            i = bisect_left(bounds, x)
            if i < n and bounds[i] == x:
                return states[2 * i + 1]
            return states[2 * i]

        return at


def _lengths(d: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(sorted({len(k) for k in d}))


def _one(states: list[_State], merge: Merge) -> _State | None:
    if not states:
        return None
    return states[0] if len(states) == 1 else merge(states)


# --------------------------------------------------------------------------------------------
# Probes: one per kind of constraint on a path
# --------------------------------------------------------------------------------------------
def _affix_probe(d: dict[str, _State], *, fold: bool, at_head: bool, merge: Merge) -> Probe:
    """Prefixes (``at_head``) or suffixes: one dict lookup per distinct length."""
    lens = _lengths(d)
    get = d.get

    def probe(v: Value) -> _State | None:
        if type(v) is not str:
            return None
        if fold:
            v = v.lower()
        n = len(v)
        states = []
        for length in lens:
            if length > n:
                break
            hit = get(v[:length] if at_head else v[n - length :])
            if hit is not None:
                states.append(hit)
        return _one(states, merge)

    return probe


def _folded_probe(d: dict[str, _State]) -> Probe:
    get = d.get
    return lambda v: get(v.lower()) if type(v) is str else None


WildcardEntry: TypeAlias = tuple[tuple[str, ...], _State]


def _wildcard_probes(wildcards: dict[tuple[str, ...], _State], merge: Merge) -> list[Probe]:
    """Wildcards indexed by their literal head or tail, else scanned.

    Of head and tail, a wildcard is filed under the one fewer wildcards share (then the longer),
    so that many wildcards with a common head ("https://host/*/project-42") still spread out.
    """
    heads: dict[str, list[WildcardEntry]] = {}
    tails: dict[str, list[WildcardEntry]] = {}
    scan_list: list[WildcardEntry] = []
    head_count = Counter(seg[0] for seg in wildcards if len(seg) > 1)
    tail_count = Counter(seg[-1] for seg in wildcards if len(seg) > 1)
    for segments, state in wildcards.items():
        entry = (segments, state)
        head, tail = segments[0], segments[-1]
        if len(segments) > 1 and (head or tail):
            head_score = (head_count[head], -len(head)) if head else (len(wildcards) + 1, 0)
            tail_score = (tail_count[tail], -len(tail)) if tail else (len(wildcards) + 1, 0)
            if head_score <= tail_score:
                heads.setdefault(head, []).append(entry)
            else:
                tails.setdefault(tail, []).append(entry)
        else:
            scan_list.append(entry)
    probes: list[Probe] = []
    if heads:
        probes.append(_wildcard_index_probe(heads, at_head=True, merge=merge))
    if tails:
        probes.append(_wildcard_index_probe(tails, at_head=False, merge=merge))
    if scan_list:
        entries = tuple(scan_list)

        def scan_probe(v: Value) -> _State | None:
            if type(v) is not str:
                return None
            return _one([s for segments, s in entries if wildcard_match(segments, v)], merge)

        probes.append(scan_probe)
    return probes


def _wildcard_index_probe(
    index: dict[str, list[WildcardEntry]], *, at_head: bool, merge: Merge
) -> Probe:
    lens = _lengths(index)
    get = {k: tuple(v) for k, v in index.items()}.get

    def probe(v: Value) -> _State | None:
        if type(v) is not str:
            return None
        n = len(v)
        states: list[_State] = []
        for length in lens:
            if length > n:
                break
            found = get(v[:length] if at_head else v[n - length :])
            if found is not None:
                states.extend(s for segments, s in found if wildcard_match(segments, v))
        return _one(states, merge)

    return probe


def _numeric_probe(ranges: _Ranges[int], state_of: StateOf) -> Probe:
    if ranges.linear:
        states = ranges.states(state_of)
        return lambda v: states(v) if type(v) is float else None
    by_region = [state_of(r) if r else None for r in ranges.regions]
    bounds = ranges.bounds
    n = len(bounds)

    def probe(v: Value) -> _State | None:  # ranges.states, inlined: numbers rarely repeat
        if type(v) is not float:
            return None
        i = bisect_left(bounds, v)
        if i < n and bounds[i] == v:
            return by_region[2 * i + 1]
        return by_region[2 * i]

    return probe


def _ip_probe(by_bits: dict[int, _Ranges[int]], state_of: StateOf) -> Probe:
    lookups = {bits: ranges.states(state_of) for bits, ranges in by_bits.items()}

    def probe(v: Value) -> _State | None:
        if type(v) is str:
            ip = event_ip(v)
            if ip is not None:
                states = lookups.get(ip[0])
                if states is not None:
                    return states(ip[1])
        return None

    return probe


def _anything_but_probe(
    preds: tuple[int, ...], excluded: dict[Value, frozenset[int]], state_of: StateOf
) -> Probe:
    """``preds[i]`` holds for every value but those ``excluded`` lists with ``i``."""
    every = state_of(preds)

    def probe(v: Value) -> _State | None:
        out = excluded.get(v)
        if out is None:
            return every
        rest = [p for i, p in enumerate(preds) if i not in out]
        return state_of(rest) if rest else None

    return probe


def _matcher_probe(matchers: tuple[tuple[Matcher, int], ...], state_of: StateOf) -> Probe:
    def probe(v: Value) -> _State | None:
        preds = [p for matcher, p in matchers if matcher.matches(v)]
        return state_of(preds) if preds else None

    return probe


def _build_path(entries: list[tuple[Constraint, int]], state_of: StateOf, merge: Merge) -> Lookup:
    """Index the predicates on one path: a table by value and a function for other values.

    The table holds every exact value of the patterns (with what the other constraints say
    about it); a value not in it goes through the probes and is remembered (up to
    ``_MEMO_SIZE`` values). A path with exact values only needs no probes: a value not in the
    table matches nothing.
    """
    exact: dict[Value, dict[int, None]] = {}
    prefix: dict[str, dict[int, None]] = {}
    prefix_ic: dict[str, dict[int, None]] = {}
    suffix: dict[str, dict[int, None]] = {}
    suffix_ic: dict[str, dict[int, None]] = {}
    eic: dict[str, dict[int, None]] = {}
    wildcards: dict[tuple[str, ...], dict[int, None]] = {}
    numeric: list[Range[int]] = []
    ip: dict[int, list[Range[int]]] = {}
    exists: dict[int, None] = {}
    ab_preds: list[int] = []
    ab_excluded: dict[Value, set[int]] = {}
    ab_other: list[tuple[Matcher, int]] = []
    for constraint, pred in entries:
        for m in constraint.matchers:
            if isinstance(m, Exact):
                exact.setdefault(m.value, {})[pred] = None
            elif isinstance(m, Numeric):
                if m.lo == m.hi:
                    exact.setdefault(m.lo, {})[pred] = None
                else:
                    numeric.append((m.lo, m.lo_open, m.hi, m.hi_open, pred))
            elif isinstance(m, Prefix):
                (prefix_ic if m.ignore_case else prefix).setdefault(m.value, {})[pred] = None
            elif isinstance(m, Suffix):
                (suffix_ic if m.ignore_case else suffix).setdefault(m.value, {})[pred] = None
            elif isinstance(m, EqualsIgnoreCase):
                eic.setdefault(m.value, {})[pred] = None
            elif isinstance(m, Wildcard):
                wildcards.setdefault(m.segments, {})[pred] = None
            elif isinstance(m, Cidr):
                ip.setdefault(m.bits, []).append((m.lo, False, m.hi, False, pred))
            elif isinstance(m, IpExact):
                ip.setdefault(m.bits, []).append((m.value, False, m.value, False, pred))
            elif isinstance(m, Exists):
                exists[pred] = None
            elif isinstance(m, AnythingBut):
                for v in m.values:
                    ab_excluded.setdefault(v, set()).add(len(ab_preds))
                ab_preds.append(pred)
            else:
                ab_other.append((m, pred))

    def freeze(d: dict[Any, dict[int, None]]) -> dict[Any, _State]:
        return {k: state_of(v) for k, v in d.items()}

    probes: list[Probe] = []
    if prefix:
        probes.append(_affix_probe(freeze(prefix), fold=False, at_head=True, merge=merge))
    if prefix_ic:
        probes.append(_affix_probe(freeze(prefix_ic), fold=True, at_head=True, merge=merge))
    if suffix:
        probes.append(_affix_probe(freeze(suffix), fold=False, at_head=False, merge=merge))
    if suffix_ic:
        probes.append(_affix_probe(freeze(suffix_ic), fold=True, at_head=False, merge=merge))
    if eic:
        probes.append(_folded_probe(freeze(eic)))
    if wildcards:
        probes.extend(_wildcard_probes(freeze(wildcards), merge))
    if numeric:
        probes.append(_numeric_probe(_Ranges(numeric), state_of))
    if ip:
        probes.append(_ip_probe({bits: _Ranges(r) for bits, r in ip.items()}, state_of))
    if ab_preds:
        excluded = {k: frozenset(v) for k, v in ab_excluded.items()}
        probes.append(_anything_but_probe(tuple(ab_preds), excluded, state_of))
    if ab_other:
        probes.append(_matcher_probe(tuple(ab_other), state_of))
    if exists:
        every = state_of(exists)
        probes.append(lambda v: every)

    if not probes:
        return freeze(exact), None, False
    if len(probes) == 1:
        outcome: Callable[[Value], _State | None] = probes[0]
    else:
        all_probes = tuple(probes)

        def outcome(v: Value) -> _State | None:
            return _one([s for probe in all_probes if (s := probe(v)) is not None], merge)

    table: dict[Value, Outcome] = {}
    for value, preds in exact.items():
        state = state_of(preds)
        other = outcome(value)
        table[value] = state if other is None else merge([state, other])
    limit = len(table) + _MEMO_SIZE

    def compute(v: Value) -> Outcome:
        result = outcome(v) or _NONE
        if len(table) < limit and (type(v) is not str or len(v) <= _MEMO_LENGTH):
            table[v] = result
        return result

    return table, compute, False


def _group(constraint: Constraint) -> int:
    """0 values, 1 numeric ranges, 2 anything-but/exists (match most values)."""
    group = 0
    for m in constraint.matchers:
        if isinstance(m, Numeric):
            group = max(group, 0 if m.lo == m.hi else 1)
        elif m.kind == 3:
            return 2
    return group


class RuleMatcher(Generic[K]):
    """All rules compiled into one index; immutable (build a new one when rules change)."""

    __slots__ = (
        "_absent",
        "_absent_mask",
        "_always",
        "_branch_mask",
        "_branch_rule",
        "_branches",
        "_path_bit",
        "_patterns",
        "_rule_ids",
        "_tree",
        "_trees",
    )

    def __init__(self) -> None:
        self._rule_ids: list[K] = []
        self._patterns: list[Pattern] = []
        self._branches: list[Branch] = []
        self._branch_rule: list[int] = []
        # For the array re-check: a bit per path, each branch's paths and exists-false paths
        self._path_bit: dict[str, int] = {}
        self._branch_mask: list[int] = []
        self._absent_mask: list[int] = []
        # Branches with exists-false fields: (branch number, those fields)
        self._absent: list[tuple[int, tuple[Either, ...]]] = []
        # Branches without a predicate to anchor them (only exists-false fields): always checked
        self._always: tuple[int, ...] = ()
        self._tree: ScanTree = {}
        self._trees: dict[frozenset[str], PathTree] = {}  # for the array re-check

    @classmethod
    def build(cls, rules: Mapping[K, Pattern | str | Mapping[str, Any]]) -> RuleMatcher[K]:
        """Compile ``{rule_id: pattern}``; patterns that are not ``Pattern`` yet are parsed."""
        self = cls()
        for rule_id, pattern in rules.items():
            p = pattern if isinstance(pattern, Pattern) else parse_pattern(pattern)
            index = len(self._rule_ids)
            self._rule_ids.append(rule_id)
            self._patterns.append(p)
            for branch in p.branches:
                self._branches.append(branch)
                self._branch_rule.append(index)
                mask = absent = 0
                for key in branch:
                    bit = self._path_bit.setdefault(key.path, 1 << len(self._path_bit))
                    mask |= bit
                    if key.constraint.absent:
                        absent |= bit
                self._branch_mask.append(mask)
                self._absent_mask.append(absent)
        self._compile()
        return self

    def _compile(self) -> None:
        # Predicates: distinct (path, matchers); exists-false adds "or no value" to its own.
        preds: dict[tuple[str, frozenset[Matcher]], int] = {}
        pred_group: list[int] = []
        shared: Counter[int] = Counter()
        parts: list[tuple[list[int], list[tuple[int, str]]]] = []
        tracked: set[str] = set()
        for branch in self._branches:
            positive: list[int] = []
            either: list[tuple[int, str]] = []
            for key in branch:
                c = key.constraint
                pred = -1
                if c.matchers:
                    pred = preds.setdefault((key.path, c.matchers), len(preds))
                    if pred == len(pred_group):
                        pred_group.append(_group(c))
                    shared[pred] += 1
                if c.absent:
                    either.append((pred, key.path))
                    tracked.add(key.path)
                else:
                    positive.append(pred)
            parts.append((positive, either))

        # Anchor every branch on the predicate expected to hold for the fewest branches: the
        # number of branches sharing it, weighed by how often its kind holds (exact values
        # rarely, ranges often, anything-but/exists nearly always). Then the predicates some
        # branch checks besides its anchor get a bit each (the most used the lowest, which keeps
        # the masks short).
        def cost(p: int) -> tuple[int, int, int]:
            return shared[p] << (4 * pred_group[p]), pred_group[p], p

        anchors = [min(positive, key=cost) if positive else -1 for positive, _ in parts]
        checked: Counter[int] = Counter()
        for (positive, either), anchor in zip(parts, anchors, strict=True):
            checked.update(p for p in positive if p != anchor)
            checked.update(p for p, _ in either if p >= 0)
        bit = {p: 1 << i for i, (p, _) in enumerate(checked.most_common())}

        anchored: dict[int, list[Check]] = {}
        always: list[int] = []
        for number, ((positive, either), anchor) in enumerate(zip(parts, anchors, strict=True)):
            rest = 0
            for p in positive:
                if p != anchor:
                    rest |= bit[p]
            check = number
            if either:
                check = -1 - len(self._absent)
                self._absent.append((number, tuple((bit.get(p, 0), path) for p, path in either)))
            if anchor < 0:
                always.append(check)
            else:
                anchored.setdefault(anchor, []).append((check, rest))
        self._always = tuple(always)

        states: dict[frozenset[int], _State] = {}

        def state_of(group: Iterable[int]) -> _State:
            key = frozenset(group)
            state = states.get(key)
            if state is None:
                needs = 0
                for p in key:
                    needs |= bit.get(p, 0)
                checks = tuple(c for p in sorted(key) for c in anchored.get(p, ()))
                state = states[key] = _State(needs, checks)
            return state

        def merge(group: list[_State]) -> _State:
            needs = 0
            for s in group:
                needs |= s.needs
            return _State(needs, tuple(dict.fromkeys(c for s in group for c in s.checks)))

        by_path: dict[str, list[tuple[Constraint, int]]] = {}
        for (path, matchers), pred in preds.items():
            by_path.setdefault(path, []).append((Constraint(matchers), pred))
        lookups: dict[str, Lookup] = {}
        for path in by_path.keys() | tracked:
            table, compute, _ = _build_path(by_path.get(path, []), state_of, merge)
            lookups[path] = (table, compute, path in tracked)
        self._tree = scan_tree(lookups)

    def __len__(self) -> int:
        return len(self._rule_ids)

    @property
    def rule_ids(self) -> list[K]:
        return list(self._rule_ids)

    def pattern(self, index: int) -> Pattern:
        return self._patterns[index]

    def match(self, event: Mapping[str, Any]) -> list[K]:
        """Ids of the rules ``event`` matches, in the order the rules were given to ``build``."""
        if type(event) is not dict and not isinstance(event, Mapping):
            raise TypeError("an event is a JSON object")
        checks: list[Check] = []
        counts: dict[str, int] = {}
        in_arrays: dict[str, int] = {}
        holds = scan(event, self._tree, checks, counts, in_arrays)
        hits = [number for number, rest in checks if rest & holds == rest]
        if self._always:
            hits.extend(self._always)
        if not hits:
            return []
        if self._absent and min(hits) < 0:
            hits = self._exists_false(hits, holds, counts, in_arrays)
        if in_arrays and hits:
            hits = self._verify(hits, event, in_arrays)
        if len(hits) == 1:
            return [self._rule_ids[self._branch_rule[hits[0]]]]
        rules = sorted(set(map(self._branch_rule.__getitem__, hits)))
        return list(map(self._rule_ids.__getitem__, rules))

    def _exists_false(
        self, hits: list[int], holds: int, counts: dict[str, int], in_arrays: dict[str, int]
    ) -> list[int]:
        """Resolve the hits of branches with exists-false fields (numbered -1 - i)."""
        kept = []
        for number in hits:
            if number >= 0:
                kept.append(number)
                continue
            branch, either = self._absent[-1 - number]
            for bit, path in either:
                if holds & bit:
                    continue  # one of its values matched
                n = counts.get(path, 0)
                if n and in_arrays.get(path, 0) != n:
                    break  # a value outside arrays: present
            else:
                kept.append(branch)
        return kept

    def _verify(
        self, hits: list[int], event: Mapping[str, Any], in_arrays: dict[str, int]
    ) -> list[int]:
        """Re-check, with array consistency, the hits whose fields meet inside arrays.

        Only the fields with values inside array elements are searched: values outside arrays
        agree with any choice of elements, and those fields are known to match already.
        """
        path_bit = self._path_bit
        arrays = 0
        for path in in_arrays:
            arrays |= path_bit.get(path, 0)
        kept = []
        recheck: list[tuple[int, int]] = []
        for b in hits:
            inside = self._branch_mask[b] & arrays
            # at most one field inside arrays, and not an exists-false one: nothing to agree
            if not inside & (inside - 1) and not inside & self._absent_mask[b]:
                kept.append(b)
            else:
                recheck.append((b, inside))
        if recheck:
            union = 0
            for _, inside in recheck:
                union |= inside
            paths = frozenset(p for p in in_arrays if path_bit.get(p, 0) & union)
            fields = flatten_fields(event, self._tree_for(paths))
            for b, inside in recheck:
                keys = tuple(k for k in self._branches[b] if path_bit[k.path] & inside)
                if branch_matches(keys, fields):
                    kept.append(b)
        return kept

    def _tree_for(self, key: frozenset[str]) -> PathTree:
        tree = self._trees.get(key)
        if tree is None:
            tree = path_tree(key)
            if len(self._trees) < _MAX_TREES:
                self._trees[key] = tree
        return tree
