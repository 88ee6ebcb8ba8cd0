"""JSONPath as Step Functions evaluates it (its engine is Jayway JsonPath).

Why not a library: Step Functions' semantics hinge on the Jayway distinction between *definite*
paths (only names and single indices: one value or nothing) and *indefinite* ones (wildcards,
slices, unions, filters, deep scan: always a list, possibly empty), on Reference Paths (definite
paths, the only kind ``ResultPath`` accepts, with create-on-write) and on a few quirks (a
negative index counts from the end; an index past the end of an array is a *miss*). jsonpath-ng
returns match lists for everything, has no typing for ``mypy --strict`` and parses through PLY;
this small recursive-descent parser is typed, pure, cached, and does exactly the subset ASL uses:

``$`` / ``$$`` roots, ``.name``, ``['name']``/``["name"]``, ``[n]`` (``n`` may be negative),
``[*]``/``.*``, ``[start:end:step]``, unions ``[0,2]``/``['a','b']``, deep scan ``..name``/``..*``
/``..[n]``, filters ``[?(@.price < 10 && @.tag == 'x')]`` with ``== != < <= > >=``, ``&&``,
``||``, ``!``, parentheses and existence tests ``[?(@.isbn)]``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias


class _Missing:
    """The result of a definite path that matches nothing (distinct from JSON ``null``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


class JsonPathError(ValueError):
    """The text is not a JSONPath this interpreter understands."""


# --- AST ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Child:
    name: str


@dataclass(frozen=True, slots=True)
class Index:
    index: int


@dataclass(frozen=True, slots=True)
class Wildcard:
    pass


@dataclass(frozen=True, slots=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True, slots=True)
class Union:
    keys: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Filter:
    expr: FilterExpr


@dataclass(frozen=True, slots=True)
class Descend:
    inner: Segment


Segment: TypeAlias = Child | Index | Wildcard | Slice | Union | Filter | Descend


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class RelPath:
    from_root: bool  # ``$`` (document root) rather than ``@`` (current node)
    segments: tuple[Segment, ...]


Operand: TypeAlias = Literal | RelPath


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class Exists:
    operand: Operand


@dataclass(frozen=True, slots=True)
class Not:
    expr: FilterExpr


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "&&" | "||"
    items: tuple[FilterExpr, ...]


FilterExpr: TypeAlias = Compare | Exists | Not | BoolOp


# --- Path -----------------------------------------------------------------------------------------


def _is_definite_segments(segments: Sequence[Segment]) -> bool:
    return all(isinstance(s, (Child, Index)) for s in segments)


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path. ``context`` is true for ``$$...`` (the context object)."""

    text: str
    context: bool
    segments: tuple[Segment, ...]

    @property
    def definite(self) -> bool:
        return _is_definite_segments(self.segments)

    @property
    def is_reference_path(self) -> bool:
        """A Reference Path identifies at most one node: names and single indices only."""
        return not self.context and self.definite

    def find(self, data: Any) -> list[Any]:
        """Every match, in document order."""
        return _find(self.segments, data, data)

    def get(self, data: Any, *, index_past_end_is_null: bool = False) -> Any:
        """Jayway's read: a definite path gives the value or :data:`MISSING`; an indefinite one
        gives the (possibly empty) list of matches.

        ``index_past_end_is_null`` reproduces what Step Functions does for a definite path in a
        payload template (``"v.$": "$.items[5]"`` on a 2-item array is ``null``, not a failure).
        """
        if not self.definite:
            return self.find(data)
        node = data
        for seg in self.segments:
            if isinstance(seg, Child):
                if not isinstance(node, dict) or seg.name not in node:
                    return MISSING
                node = node[seg.name]
            else:
                assert isinstance(seg, Index)
                if not isinstance(node, list):
                    return MISSING
                i = seg.index + len(node) if seg.index < 0 else seg.index
                if not 0 <= i < len(node):
                    return None if index_past_end_is_null else MISSING
                node = node[i]
        return node

    def __str__(self) -> str:
        return self.text


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return list(node)
    return []


def _descendants(node: Any) -> Iterator[Any]:
    """The node and all of its descendants, pre-order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        kids = _children(current)
        stack.extend(reversed(kids))


def _apply(seg: Segment, node: Any, root: Any) -> list[Any]:
    if isinstance(seg, Child):
        if isinstance(node, dict) and seg.name in node:
            return [node[seg.name]]
        return []
    if isinstance(seg, Index):
        if isinstance(node, list):
            i = seg.index + len(node) if seg.index < 0 else seg.index
            if 0 <= i < len(node):
                return [node[i]]
        return []
    if isinstance(seg, Wildcard):
        return _children(node)
    if isinstance(seg, Slice):
        if isinstance(node, list):
            if seg.step == 0:
                return []
            return node[seg.start : seg.stop : seg.step]
        return []
    if isinstance(seg, Union):
        out: list[Any] = []
        for key in seg.keys:
            out.extend(_apply(Child(key) if isinstance(key, str) else Index(key), node, root))
        return out
    if isinstance(seg, Filter):
        return [c for c in _children(node) if _eval_filter(seg.expr, c, root)]
    assert isinstance(seg, Descend)
    out = []
    for d in _descendants(node):
        out.extend(_apply(seg.inner, d, root))
    return out


def _find(segments: Sequence[Segment], data: Any, root: Any) -> list[Any]:
    nodes = [data]
    for seg in segments:
        nodes = [m for n in nodes for m in _apply(seg, n, root)]
        if not nodes:
            break
    return nodes


def _operand_value(op: Operand, node: Any, root: Any) -> Any:
    if isinstance(op, Literal):
        return op.value
    base = root if op.from_root else node
    if _is_definite_segments(op.segments):
        return JsonPath("", False, op.segments).get(base)
    matches = _find(op.segments, base, root)
    return matches if matches else MISSING


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def json_equal(a: Any, b: Any) -> bool:
    """Structural JSON equality: ``1 == 1.0`` but ``true != 1``."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return op == "!=" and not (left is MISSING and right is MISSING)
    if op == "==":
        return json_equal(left, right)
    if op == "!=":
        return not json_equal(left, right)
    comparable = (_is_number(left) and _is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    )
    if not comparable:
        return False
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _eval_filter(expr: FilterExpr, node: Any, root: Any) -> bool:
    if isinstance(expr, Compare):
        return _compare(
            expr.op, _operand_value(expr.left, node, root), _operand_value(expr.right, node, root)
        )
    if isinstance(expr, Exists):
        value = _operand_value(expr.operand, node, root)
        return value is not MISSING and (not isinstance(expr.operand, Literal) or bool(value))
    if isinstance(expr, Not):
        return not _eval_filter(expr.expr, node, root)
    if expr.op == "&&":
        return all(_eval_filter(e, node, root) for e in expr.items)
    return any(_eval_filter(e, node, root) for e in expr.items)


# --- Parser ---------------------------------------------------------------------------------------

_NUMBER_RE: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_INT_RE: Final = re.compile(r"-?\d+")
_FILTER_NAME_STOP: Final = frozenset(" \t\n.[]()=!<>&|,")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, what: str) -> JsonPathError:
        return JsonPathError(f"Invalid JSONPath {self.text!r}: {what} at position {self.pos}")

    def peek(self, n: int = 0) -> str:
        i = self.pos + n
        return self.text[i] if i < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.peek() in (" ", "\t", "\n"):
            self.pos += 1

    def expect(self, ch: str) -> None:
        self.skip_ws()
        if self.peek() != ch:
            raise self.error(f"expected {ch!r}")
        self.pos += 1

    def path(self) -> JsonPath:
        if not self.text.startswith("$"):
            raise self.error("a path must start with '$'")
        context = self.text.startswith("$$")
        self.pos = 2 if context else 1
        segments = self.segments(stop=frozenset())
        if self.pos != len(self.text):
            raise self.error("unexpected character")
        return JsonPath(self.text, context, tuple(segments))

    def segments(self, stop: frozenset[str]) -> list[Segment]:
        out: list[Segment] = []
        while self.pos < len(self.text):
            ch = self.peek()
            if ch == ".":
                if self.peek(1) == ".":
                    self.pos += 2
                    out.append(Descend(self.dot_or_bracket(stop)))
                else:
                    self.pos += 1
                    out.append(self.dot_or_bracket(stop))
            elif ch == "[":
                out.append(self.bracket())
            elif not stop or ch in stop or ch in " \t\n":
                break
            else:
                raise self.error("unexpected character")
        return out

    def dot_or_bracket(self, stop: frozenset[str]) -> Segment:
        ch = self.peek()
        if ch == "*":
            self.pos += 1
            return Wildcard()
        if ch == "[":
            return self.bracket()
        return Child(self.name(stop))

    def name(self, stop: frozenset[str]) -> str:
        start = self.pos
        terminators = _FILTER_NAME_STOP if stop else frozenset(".[]")
        while self.pos < len(self.text) and self.text[self.pos] not in terminators:
            self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            raise self.error("empty field name")
        return name

    def string(self) -> str:
        quote = self.peek()
        self.pos += 1
        chars: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.error("unterminated string")
            self.pos += 1
            if ch == "\\" and self.peek() != "":
                chars.append(self.peek())
                self.pos += 1
            elif ch == quote:
                return "".join(chars)
            else:
                chars.append(ch)

    def integer(self) -> int | None:
        self.skip_ws()
        m = _INT_RE.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return int(m.group())

    def bracket(self) -> Segment:
        self.pos += 1  # '['
        self.skip_ws()
        ch = self.peek()
        seg: Segment
        if ch == "*":
            self.pos += 1
            seg = Wildcard()
        elif ch == "?":
            self.pos += 1
            self.expect("(")
            seg = Filter(self.filter_or())
            self.expect(")")
        elif ch in ("'", '"'):
            keys: list[str | int] = [self.string()]
            self.skip_ws()
            while self.peek() == ",":
                self.pos += 1
                self.skip_ws()
                if self.peek() not in ("'", '"'):
                    raise self.error("expected a quoted name")
                keys.append(self.string())
                self.skip_ws()
            seg = Child(str(keys[0])) if len(keys) == 1 else Union(tuple(keys))
        else:
            first = self.integer()
            self.skip_ws()
            if self.peek() == ":":
                parts: list[int | None] = [first]
                while self.peek() == ":" and len(parts) < 3:
                    self.pos += 1
                    parts.append(self.integer())
                    self.skip_ws()
                while len(parts) < 3:
                    parts.append(None)
                seg = Slice(parts[0], parts[1], parts[2])
            elif first is None:
                raise self.error("expected an index, a name, '*', a slice or a filter")
            elif self.peek() == ",":
                ints: list[str | int] = [first]
                while self.peek() == ",":
                    self.pos += 1
                    nxt = self.integer()
                    if nxt is None:
                        raise self.error("expected an index")
                    ints.append(nxt)
                    self.skip_ws()
                seg = Union(tuple(ints))
            else:
                seg = Index(first)
        self.expect("]")
        return seg

    # filter expressions
    def filter_or(self) -> FilterExpr:
        items = [self.filter_and()]
        while self.match("||"):
            items.append(self.filter_and())
        return items[0] if len(items) == 1 else BoolOp("||", tuple(items))

    def filter_and(self) -> FilterExpr:
        items = [self.filter_unary()]
        while self.match("&&"):
            items.append(self.filter_unary())
        return items[0] if len(items) == 1 else BoolOp("&&", tuple(items))

    def match(self, token: str) -> bool:
        self.skip_ws()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def filter_unary(self) -> FilterExpr:
        self.skip_ws()
        if self.peek() == "!" and self.peek(1) != "=":
            self.pos += 1
            return Not(self.filter_unary())
        if self.peek() == "(":
            self.pos += 1
            inner = self.filter_or()
            self.expect(")")
            return inner
        left = self.operand()
        self.skip_ws()
        for op in ("==", "!=", "<=", ">=", "<", ">"):
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return Compare(op, left, self.operand())
        return Exists(left)

    def operand(self) -> Operand:
        self.skip_ws()
        ch = self.peek()
        if ch in ("@", "$"):
            self.pos += 1
            return RelPath(ch == "$", tuple(self.segments(stop=_FILTER_NAME_STOP)))
        if ch in ("'", '"'):
            return Literal(self.string())
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return Literal(value)
        m = _NUMBER_RE.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            text = m.group()
            number: int | float = int(text) if re.fullmatch(r"-?\d+", text) else float(text)
            if isinstance(number, float) and not math.isfinite(number):
                raise self.error("number out of range")
            return Literal(number)
        raise self.error("expected an operand")


@functools.lru_cache(maxsize=8192)
def parse(text: str) -> JsonPath:
    """Parse (and cache) a path; raises :class:`JsonPathError`."""
    return _Parser(text).path()


def is_path(text: Any) -> bool:
    """True when ``text`` is a string that parses as a path."""
    if not isinstance(text, str):
        return False
    try:
        parse(text)
    except JsonPathError:
        return False
    return True


def is_reference_path(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        return parse(text).is_reference_path
    except JsonPathError:
        return False
