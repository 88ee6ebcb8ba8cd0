"""A state machine's definition as a graph to draw: pure data in, nodes and edges out.

Nested workflows (Parallel ``Branches``, Map ``ItemProcessor``/``Iterator``) are flattened
into one node list with a ``parent`` field naming the Parallel/Map node that contains them, so
a renderer with compound nodes (cytoscape, dagre, ELK) can nest them and a flat one can ignore
it. Ids are paths, unique by construction: a top-level state's id is its name; a nested state's
is ``<parent id>/<branch index>/<name>``, names escaped as in JSON Pointer (``~`` → ``~0``,
``/`` → ``~1``). Each scope (the workflow and every branch) gets a synthetic ``Start`` and
``End`` node, ids ``<prefix>~start`` and ``<prefix>~end``, which no escaped name can equal.

Edge kinds: ``start`` (scope start → StartAt), ``next``, ``choice`` (one per Choice rule),
``default``, ``catch``, ``retry`` (a state to itself), ``end`` (End: true, Succeed, Fail →
the scope's end) and ``branch`` (a Parallel/Map node → the first state of each branch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TERMINAL_TYPES = frozenset({"Succeed", "Fail"})
_COMBINATORS = ("And", "Or", "Not")


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    type: str
    label: str
    end: bool = False  # the state ends its workflow or branch (End: true, Succeed, Fail)
    parent: str | None = None
    query_language: str = "JSONPath"  # its own QueryLanguage, else the state machine's


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    kind: str
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _errors(entry: dict[str, Any]) -> str:
    return ", ".join(str(e) for e in entry.get("ErrorEquals") or [])


def choice_label(rule: dict[str, Any]) -> str:
    """A short caption for a Choice rule: ``$.x NumericGreaterThan 3``, ``And (2)``, or a
    JSONata ``Condition`` without its ``{% %}``."""
    if "Condition" in rule:  # JSONata
        condition = rule["Condition"]
        if isinstance(condition, str) and condition.startswith("{%") and condition.endswith("%}"):
            return condition[2:-2].strip()
        return str(condition)
    for combinator in _COMBINATORS:
        if combinator in rule:
            inner = rule[combinator]
            return f"{combinator} ({len(inner)})" if isinstance(inner, list) else combinator
    for key, value in rule.items():
        if key not in ("Variable", "Next", "Comment", "Assign", "Output"):
            return f"{rule.get('Variable', '')} {key} {value}".strip()
    return str(rule.get("Variable", ""))


def _branches(state: dict[str, Any]) -> list[dict[str, Any]]:
    if state.get("Type") == "Parallel":
        return [b for b in state.get("Branches") or [] if isinstance(b, dict)]
    if state.get("Type") == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")
        return [processor] if isinstance(processor, dict) else []
    return []


def _scope(
    workflow: dict[str, Any],
    prefix: str,
    parent: str | None,
    language: str,
    nodes: list[Node],
    edges: list[Edge],
) -> str | None:
    """Add one workflow's states; return the id of its StartAt state (if it names one).
    ``language`` is the state machine's QueryLanguage, which every nested state inherits."""
    states = workflow.get("States")
    states = states if isinstance(states, dict) else {}
    start, end = f"{prefix}~start", f"{prefix}~end"
    nodes.append(Node(start, "Start", "Start", parent=parent))
    nodes.append(Node(end, "End", "End", parent=parent))

    def ref(name: Any) -> str:
        return prefix + _escape(str(name))

    first = workflow.get("StartAt")
    if first in states:
        edges.append(Edge(start, ref(first), "start"))
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        kind = str(state.get("Type", ""))
        node = ref(name)
        ends = state.get("End") is True or kind in TERMINAL_TYPES
        own = state.get("QueryLanguage")
        own = own if isinstance(own, str) else language
        nodes.append(Node(node, kind, name, ends, parent, own))
        for retrier in state.get("Retry") or []:
            edges.append(Edge(node, node, "retry", _errors(retrier)))
        if "Next" in state:
            edges.append(Edge(node, ref(state["Next"]), "next"))
        for rule in state.get("Choices") or []:
            if isinstance(rule, dict) and "Next" in rule:
                edges.append(Edge(node, ref(rule["Next"]), "choice", choice_label(rule)))
        if "Default" in state:
            edges.append(Edge(node, ref(state["Default"]), "default"))
        for catcher in state.get("Catch") or []:
            if isinstance(catcher, dict) and "Next" in catcher:
                edges.append(Edge(node, ref(catcher["Next"]), "catch", _errors(catcher)))
        if ends:
            edges.append(Edge(node, end, "end"))
        for index, branch in enumerate(_branches(state)):
            inner = _scope(branch, f"{node}/{index}/", node, language, nodes, edges)
            if inner is not None:
                edges.append(Edge(node, inner, "branch"))
    return ref(first) if first in states else None


def graph(definition: dict[str, Any]) -> Graph:
    """Nodes and edges of a parsed ASL definition (states in definition order)."""
    nodes: list[Node] = []
    edges: list[Edge] = []
    language = definition.get("QueryLanguage")
    language = language if isinstance(language, str) else "JSONPath"
    _scope(definition, "", None, language, nodes, edges)
    return Graph(nodes, edges)
