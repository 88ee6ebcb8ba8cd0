"""``RuleMatcher``: every rule compiled into one state machine.

The machine is a trie of *states* in the style of event-ruler/quamina. Every branch of every
rule is a path through it: one transition per field, each labelled with the field's path and
constraint; branches that start with the same (path, constraint) steps share states. A state
holds, for each path that leaves it, a ``FieldMatcher`` that indexes the constraints of all the
branches passing through: a dict for exact values, dicts keyed by prefix/suffix and by folded
value, sorted boundaries (bisect) for numeric and CIDR ranges, precomputed exclusion sets for
anything-but, a short scan list for wildcards. Matching an event flattens it once, then walks
the states from the root: at each state only the event's values for the state's paths are
looked at, so the cost follows the number of *partially matching* branches, not the number of
rules.

Within a branch the fields are ordered by selectivity (exact values first, anything-but and
exists late, then by how many branches share the path), not alphabetically, so that the first
transitions prune hard. This is sound because the walk yields a superset of the matches: a
branch reached at a terminal state is exactly a match unless array consistency can matter
(values inside array elements for two or more of its fields, or an ``exists: false`` field
with values inside array elements); those few are re-checked with the exact, event-ruler-
ordered search of ``pattern.branch_matches``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeAlias, TypeVar

from app.bus.patterns.flatten import Fields, PathTree, flatten, flatten_fields, path_tree
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
from app.bus.patterns.pattern import Branch, Key, Pattern, branch_matches, parse_pattern

K = TypeVar("K", bound=Hashable)

_EMPTY: tuple[Any, ...] = ()
_INF = float("inf")
# Above this many (region, state) entries a range index falls back to a sorted scan.
_MAX_REGION_ENTRIES = 200_000

Extend: TypeAlias = Callable[[Iterable["_State"]], None]
Range: TypeAlias = tuple[Any, bool, Any, bool, "_State"]


class _State:
    __slots__ = ("items", "tail", "term")

    def __init__(self) -> None:
        self.term: tuple[int, ...] = ()
        # A chain no other branch shares, checked field by field: (path, value test, absent ok)
        self.tail: tuple[tuple[str, Callable[[Value], bool], bool], ...] | None = None
        # (path, exact dict or None, probes for the other constraints, states if absent)
        self.items: tuple[
            tuple[str, dict[Value, States] | None, tuple[Probe, ...], States], ...
        ] = ()


class _Ranges:
    """States per elementary interval between sorted boundaries (or a sorted scan)."""

    __slots__ = ("bounds", "linear", "regions")

    def __init__(self, ranges: list[Range]) -> None:
        points = sorted(
            {r[0] for r in ranges if -_INF < r[0] < _INF}
            | {r[2] for r in ranges if -_INF < r[2] < _INF}
        )
        index = {p: i for i, p in enumerate(points)}
        last = 2 * len(points)
        spans: list[tuple[int, int, _State]] = []
        total = 0
        for lo, lo_open, hi, hi_open, state in ranges:
            start = 0 if lo == -_INF else 2 * index[lo] + (2 if lo_open else 1)
            end = last if hi == _INF else 2 * index[hi] + (0 if hi_open else 1)
            if start <= end:
                spans.append((start, end, state))
                total += end - start + 1
        self.bounds = points
        self.linear: tuple[Range, ...] = ()
        self.regions: list[tuple[_State, ...]] = []
        if total > _MAX_REGION_ENTRIES:
            self.linear = tuple(sorted(ranges, key=lambda r: r[0]))
            return
        regions: list[dict[_State, None]] = [{} for _ in range(last + 1)]
        for start, end, state in spans:
            for r in range(start, end + 1):
                regions[r][state] = None
        self.regions = [tuple(r) if r else _EMPTY for r in regions]

    def lookup(self, x: Any) -> tuple[_State, ...] | list[_State]:
        if self.linear:
            return [
                s
                for lo, lo_open, hi, hi_open, s in self.linear
                if (lo < x or (lo == x and not lo_open)) and (x < hi or (x == hi and not hi_open))
            ]
        bounds = self.bounds
        i = bisect_left(bounds, x)
        if i < len(bounds) and bounds[i] == x:
            return self.regions[2 * i + 1]
        return self.regions[2 * i]


def _lengths(d: dict[str, Any]) -> tuple[int, ...]:
    return tuple(sorted({len(k) for k in d}))


# A probe looks at the event's values for one path and pushes the states they lead to.
Probe: TypeAlias = Callable[[list[Value], Extend], None]
States: TypeAlias = tuple["_State", ...]


def _prefix_probe(d: dict[str, States], fold: bool) -> Probe:
    lens = _lengths(d)

    def probe(values: list[Value], extend: Extend) -> None:
        for v in values:
            if type(v) is str:
                if fold:
                    v = v.lower()
                n = len(v)
                for length in lens:
                    if length > n:
                        break
                    hit = d.get(v[:length])
                    if hit is not None:
                        extend(hit)

    return probe


def _suffix_probe(d: dict[str, States], fold: bool) -> Probe:
    lens = _lengths(d)

    def probe(values: list[Value], extend: Extend) -> None:
        for v in values:
            if type(v) is str:
                if fold:
                    v = v.lower()
                n = len(v)
                for length in lens:
                    if length > n:
                        break
                    hit = d.get(v[n - length :])
                    if hit is not None:
                        extend(hit)

    return probe


def _folded_probe(d: dict[str, States]) -> Probe:
    def probe(values: list[Value], extend: Extend) -> None:
        for v in values:
            if type(v) is str:
                hit = d.get(v.lower())
                if hit is not None:
                    extend(hit)

    return probe


WildcardEntry: TypeAlias = tuple[tuple[str, ...], States]


def _wildcard_probes(wildcards: dict[tuple[str, ...], dict[_State, None]]) -> list[Probe]:
    """Wildcards indexed by their literal head or tail, else scanned.

    Of head and tail, a wildcard is filed under the one fewer wildcards share (then the longer),
    so that many wildcards with a common head ("https://host/*/project-42") still spread out.
    """
    heads: dict[str, list[WildcardEntry]] = {}
    tails: dict[str, list[WildcardEntry]] = {}
    scan: list[WildcardEntry] = []
    head_count = Counter(seg[0] for seg in wildcards if len(seg) > 1)
    tail_count = Counter(seg[-1] for seg in wildcards if len(seg) > 1)
    for segments, states in wildcards.items():
        entry = (segments, tuple(states))
        head, tail = segments[0], segments[-1]
        if len(segments) > 1 and (head or tail):
            head_score = (head_count[head], -len(head)) if head else (len(wildcards) + 1, 0)
            tail_score = (tail_count[tail], -len(tail)) if tail else (len(wildcards) + 1, 0)
            if head_score <= tail_score:
                heads.setdefault(head, []).append(entry)
            else:
                tails.setdefault(tail, []).append(entry)
        else:
            scan.append(entry)
    probes: list[Probe] = []
    if heads:
        probes.append(_wildcard_index_probe(heads, at_head=True))
    if tails:
        probes.append(_wildcard_index_probe(tails, at_head=False))
    if scan:
        entries = tuple(scan)

        def scan_probe(values: list[Value], extend: Extend) -> None:
            for v in values:
                if type(v) is str:
                    for segments, states in entries:
                        if wildcard_match(segments, v):
                            extend(states)

        probes.append(scan_probe)
    return probes


def _wildcard_index_probe(index: dict[str, list[WildcardEntry]], *, at_head: bool) -> Probe:
    lens = _lengths(index)
    get = {k: tuple(v) for k, v in index.items()}.get
    if at_head:

        def head_probe(values: list[Value], extend: Extend) -> None:
            for v in values:
                if type(v) is str:
                    n = len(v)
                    for length in lens:
                        if length > n:
                            break
                        found = get(v[:length])
                        if found is not None:
                            for segments, states in found:
                                if wildcard_match(segments, v):
                                    extend(states)

        return head_probe

    def tail_probe(values: list[Value], extend: Extend) -> None:
        for v in values:
            if type(v) is str:
                n = len(v)
                for length in lens:
                    if length > n:
                        break
                    found = get(v[n - length :])
                    if found is not None:
                        for segments, states in found:
                            if wildcard_match(segments, v):
                                extend(states)

    return tail_probe


def _numeric_probe(ranges: _Ranges) -> Probe:
    lookup = ranges.lookup

    def probe(values: list[Value], extend: Extend) -> None:
        for v in values:
            if type(v) is float:
                extend(lookup(v))

    return probe


def _ip_probe(by_bits: dict[int, _Ranges]) -> Probe:
    def probe(values: list[Value], extend: Extend) -> None:
        for v in values:
            if type(v) is str:
                ip = event_ip(v)
                if ip is not None:
                    ranges = by_bits.get(ip[0])
                    if ranges is not None:
                        extend(ranges.lookup(ip[1]))

    return probe


def _anything_but_probe(
    entries: tuple[_State, ...], excluded: dict[Value, frozenset[int]]
) -> Probe:
    every = tuple(dict.fromkeys(entries))

    def probe(values: list[Value], extend: Extend) -> None:
        for v in values:
            out = excluded.get(v)
            if out is None:
                extend(every)
            else:
                extend([s for i, s in enumerate(entries) if i not in out])

    return probe


def _matcher_probe(matchers: tuple[tuple[Matcher, States], ...]) -> Probe:
    def probe(values: list[Value], extend: Extend) -> None:
        for v in values:
            for matcher, states in matchers:
                if matcher.matches(v):
                    extend(states)

    return probe


def _exists_probe(states: States) -> Probe:
    def probe(values: list[Value], extend: Extend) -> None:
        extend(states)

    return probe


def _freeze(d: dict[Any, dict[_State, None]]) -> dict[Any, States]:
    return {k: tuple(v) for k, v in d.items()}


def _build_field(
    entries: list[tuple[Constraint, _State]],
) -> tuple[dict[Value, States] | None, tuple[Probe, ...], States]:
    """Index the constraints on one path leaving one state: exact dict, probes, absent."""
    exact: dict[Value, dict[_State, None]] = {}
    prefix: dict[str, dict[_State, None]] = {}
    prefix_ic: dict[str, dict[_State, None]] = {}
    suffix: dict[str, dict[_State, None]] = {}
    suffix_ic: dict[str, dict[_State, None]] = {}
    eic: dict[str, dict[_State, None]] = {}
    wildcards: dict[tuple[str, ...], dict[_State, None]] = {}
    numeric: list[Range] = []
    ip: dict[int, list[Range]] = {}
    exists: dict[_State, None] = {}
    absent: dict[_State, None] = {}
    ab_entries: list[_State] = []
    ab_excluded: dict[Value, set[int]] = {}
    ab_other: list[tuple[Matcher, States]] = []
    for constraint, state in entries:
        if constraint.absent:
            absent[state] = None
        for m in constraint.matchers:
            if isinstance(m, Exact):
                exact.setdefault(m.value, {})[state] = None
            elif isinstance(m, Numeric):
                if m.lo == m.hi:
                    exact.setdefault(m.lo, {})[state] = None
                else:
                    numeric.append((m.lo, m.lo_open, m.hi, m.hi_open, state))
            elif isinstance(m, Prefix):
                (prefix_ic if m.ignore_case else prefix).setdefault(m.value, {})[state] = None
            elif isinstance(m, Suffix):
                (suffix_ic if m.ignore_case else suffix).setdefault(m.value, {})[state] = None
            elif isinstance(m, EqualsIgnoreCase):
                eic.setdefault(m.value, {})[state] = None
            elif isinstance(m, Wildcard):
                wildcards.setdefault(m.segments, {})[state] = None
            elif isinstance(m, Cidr):
                ip.setdefault(m.bits, []).append((m.lo, False, m.hi, False, state))
            elif isinstance(m, IpExact):
                ip.setdefault(m.bits, []).append((m.value, False, m.value, False, state))
            elif isinstance(m, Exists):
                exists[state] = None
            elif isinstance(m, AnythingBut):
                for v in m.values:
                    ab_excluded.setdefault(v, set()).add(len(ab_entries))
                ab_entries.append(state)
            else:
                ab_other.append((m, (state,)))
    probes: list[Probe] = []
    if prefix:
        probes.append(_prefix_probe(_freeze(prefix), fold=False))
    if prefix_ic:
        probes.append(_prefix_probe(_freeze(prefix_ic), fold=True))
    if suffix:
        probes.append(_suffix_probe(_freeze(suffix), fold=False))
    if suffix_ic:
        probes.append(_suffix_probe(_freeze(suffix_ic), fold=True))
    if eic:
        probes.append(_folded_probe(_freeze(eic)))
    if wildcards:
        probes.extend(_wildcard_probes(wildcards))
    if numeric:
        probes.append(_numeric_probe(_Ranges(numeric)))
    if ip:
        probes.append(_ip_probe({bits: _Ranges(r) for bits, r in ip.items()}))
    if ab_entries:
        excluded = {k: frozenset(v) for k, v in ab_excluded.items()}
        probes.append(_anything_but_probe(tuple(ab_entries), excluded))
    if ab_other:
        probes.append(_matcher_probe(tuple(ab_other)))
    if exists:
        probes.append(_exists_probe(tuple(exists)))
    return (_freeze(exact) if exact else None), tuple(probes), tuple(absent)


def _value_test(constraint: Constraint) -> Callable[[Value], bool]:
    """A fast predicate equivalent to ``constraint.matches``."""
    matchers = constraint.matchers
    if not matchers:
        return _never
    if all(isinstance(m, Exact) for m in matchers):
        # Normalised values never hold bools, so == and hashing cannot mix up JSON types.
        if len(matchers) == 1:
            (m,) = matchers
            value = m.value  # type: ignore[union-attr]
            return lambda v: v == value
        return frozenset(m.value for m in matchers).__contains__  # type: ignore[union-attr]
    if len(matchers) == 1:
        (m,) = matchers
        return _single_test(m)
    return constraint.matches


def _single_test(m: Matcher) -> Callable[[Value], bool]:
    """Closures over plain locals: cheaper per call than the dataclass methods."""
    if isinstance(m, Numeric):
        lo, hi = m.lo, m.hi
        if m.lo_open:
            if m.hi_open:
                return lambda v: type(v) is float and lo < v < hi
            return lambda v: type(v) is float and lo < v <= hi
        if m.hi_open:
            return lambda v: type(v) is float and lo <= v < hi
        return lambda v: type(v) is float and lo <= v <= hi
    if isinstance(m, Prefix) and not m.ignore_case:
        text = m.value
        return lambda v: type(v) is str and v.startswith(text)
    if isinstance(m, Suffix) and not m.ignore_case:
        text = m.value
        return lambda v: type(v) is str and v.endswith(text)
    if isinstance(m, AnythingBut):
        out = m.values
        return lambda v: v not in out
    if isinstance(m, Exists):
        return _always
    return m.matches


def _always(v: Value) -> bool:
    return True


def _never(v: Value) -> bool:
    return False


class _Builder:
    __slots__ = ("fields", "term")

    def __init__(self) -> None:
        self.term: list[int] = []
        self.fields: dict[str, dict[Constraint, _Builder]] = {}

    def child(self, path: str, constraint: Constraint) -> _Builder:
        by_constraint = self.fields.setdefault(path, {})
        nxt = by_constraint.get(constraint)
        if nxt is None:
            nxt = by_constraint[constraint] = _Builder()
        return nxt

    def chain(self) -> tuple[list[tuple[str, Constraint]], list[int]] | None:
        """The fields and branch of a subtree that is a single chain, else None."""
        steps: list[tuple[str, Constraint]] = []
        node = self
        while not node.term:
            if len(node.fields) != 1:
                return None
            ((path, by_constraint),) = node.fields.items()
            if len(by_constraint) != 1:
                return None
            ((constraint, node),) = by_constraint.items()
            steps.append((path, constraint))
        if node.fields:
            return None
        return steps, node.term

    def freeze(self) -> _State:
        state = _State()
        chain = self.chain()
        if chain is not None and chain[0]:
            steps, term = chain
            state.term = tuple(term)
            state.tail = tuple((path, _value_test(c), c.absent) for path, c in steps)
            return state
        state.term = tuple(self.term)
        items = []
        for path, by_constraint in self.fields.items():
            entries = [(c, b.freeze()) for c, b in by_constraint.items()]
            exact, probes, absent = _build_field(entries)
            items.append((path, exact, probes, absent))
        state.items = tuple(items)
        return state


def _group(constraint: Constraint) -> int:
    """0 values, 1 numeric ranges, 2 anything-but/exists (match most values), 3 absence."""
    if constraint.absent:
        return 3
    group = 0
    for m in constraint.matchers:
        if isinstance(m, Numeric):
            group = max(group, 0 if m.lo == m.hi else 1)
        elif m.kind == 3:
            return 2
    return group


def _field_order(branches: list[Branch]) -> Callable[[Key], tuple[int, int, str]]:
    """Sort key putting a branch's most selective fields first.

    Selectivity is estimated per path as the number of distinct constraints all rules put on
    it: a path that rules test for thousands of different values (a project id, an instance
    id, a URL) narrows far more than one tested for a handful (a status, the source). Broad
    constraints (numeric ranges, anything-but, exists) come after, absence last.
    """
    distinct: dict[str, set[Constraint]] = {}
    for branch in branches:
        for key in branch:
            distinct.setdefault(key.path, set()).add(key.constraint)
    spread = {path: len(cs) for path, cs in distinct.items()}
    return lambda k: (_group(k.constraint), -spread[k.path], k.path)


class RuleMatcher(Generic[K]):
    """All rules compiled into one machine; immutable (build a new one when rules change)."""

    __slots__ = (
        "_absent_paths",
        "_branch_paths",
        "_branch_rule",
        "_branches",
        "_patterns",
        "_root",
        "_rule_ids",
        "_tree",
    )

    def __init__(self) -> None:
        self._rule_ids: list[K] = []
        self._patterns: list[Pattern] = []
        self._branches: list[Branch] = []
        self._branch_rule: list[int] = []
        self._branch_paths: list[frozenset[str]] = []
        self._absent_paths: list[frozenset[str]] = []
        self._root = _State()
        self._tree: PathTree = {}

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
                self._branch_paths.append(frozenset(k.path for k in branch))
                self._absent_paths.append(frozenset(k.path for k in branch if k.constraint.absent))
        order = _field_order(self._branches)
        root = _Builder()
        for number, branch in enumerate(self._branches):
            node = root
            for key in sorted(branch, key=order):
                node = node.child(key.path, key.constraint)
            node.term.append(number)
        self._root = root.freeze()
        self._tree = path_tree({p for paths in self._branch_paths for p in paths})
        return self

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
        values, in_arrays = flatten(event, self._tree)
        hits: list[int] = []
        stack = [self._root]
        seen: set[_State] = set()
        pop, extend, get, add_hits = stack.pop, stack.extend, values.get, hits.extend
        while stack:
            state = pop()
            tail = state.tail
            if tail is not None:  # no children: duplicates only repeat a cheap check
                for path, test, absent_ok in tail:
                    vs = get(path)
                    if vs is None:
                        if absent_ok:
                            continue
                        break
                    if any(map(test, vs)):
                        continue
                    if absent_ok and in_arrays and in_arrays.get(path, 0) == len(vs):
                        continue
                    break
                else:
                    add_hits(state.term)
                continue
            if state in seen:
                continue
            seen.add(state)
            if state.term:
                add_hits(state.term)
            for path, exact, probes, absent in state.items:
                vs = get(path)
                if vs is None:
                    if absent:
                        extend(absent)
                    continue
                if exact is not None:
                    for v in vs:
                        nxt = exact.get(v)
                        if nxt is not None:
                            extend(nxt)
                for probe in probes:
                    probe(vs, extend)
                if absent and in_arrays and in_arrays.get(path, 0) == len(vs):
                    extend(absent)  # present only inside array elements: maybe absent
        if not hits:
            return []
        if in_arrays:
            hits = self._verify(hits, event, in_arrays)
        if len(hits) == 1:
            return [self._rule_ids[self._branch_rule[hits[0]]]]
        branch_rule = self._branch_rule
        rules = sorted({branch_rule[b] for b in hits})
        return [self._rule_ids[i] for i in rules]

    def _verify(
        self, hits: list[int], event: Mapping[str, Any], in_arrays: dict[str, int]
    ) -> list[int]:
        """Re-check, with array consistency, the hits whose fields meet inside arrays."""
        fields: Fields | None = None
        kept = []
        keys = in_arrays.keys()
        for b in hits:
            paths = self._branch_paths[b]
            if paths.isdisjoint(keys):
                kept.append(b)
                continue
            absent = self._absent_paths[b]
            if len(paths & keys) < 2 and absent.isdisjoint(keys):
                kept.append(b)
                continue
            if fields is None:
                fields = flatten_fields(event, self._tree)
            if branch_matches(self._branches[b], fields):
                kept.append(b)
        return kept
