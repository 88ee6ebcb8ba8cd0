"""The drawing graph of a definition: every state a node, every transition an edge, nested
branches flattened under their Parallel/Map parent with path ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.workflows.graph import Edge, Node, choice_label, graph


def edges(definition: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.kind) for e in graph(definition).edges}


def test_hello_world_is_a_line_from_start_to_end() -> None:
    path = Path("app/definitions/state_machines/hello-world.asl.json")
    root = Path(__file__).resolve().parents[3]
    result = graph(json.loads((root / path).read_text()))
    assert result.nodes == [
        Node("~start", "Start", "Start"),
        Node("~end", "End", "End"),
        Node("Greet", "Pass", "Greet"),
        Node("Pause", "Wait", "Pause"),
        Node("Done", "Succeed", "Done", end=True),
    ]
    assert result.edges == [
        Edge("~start", "Greet", "start"),
        Edge("Greet", "Pause", "next"),
        Edge("Pause", "Done", "next"),
        Edge("Done", "~end", "end"),
    ]


def test_choice_catch_retry_and_end() -> None:
    definition = {
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.n", "NumericGreaterThan": 3, "Next": "Work"},
                    {"And": [{"Variable": "$.a", "IsPresent": True}], "Next": "Oops"},
                ],
                "Default": "Done",
            },
            "Work": {
                "Type": "Task",
                "Resource": "arn:smokehouse:handler:echo",
                "Retry": [{"ErrorEquals": ["States.Timeout"]}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Oops"}],
                "End": True,
            },
            "Oops": {"Type": "Fail", "Error": "E"},
            "Done": {"Type": "Succeed"},
        },
    }
    result = graph(definition)
    assert {(e.source, e.target, e.kind, e.label) for e in result.edges} == {
        ("~start", "Pick", "start", None),
        ("Pick", "Work", "choice", "$.n NumericGreaterThan 3"),
        ("Pick", "Oops", "choice", "And (1)"),
        ("Pick", "Done", "default", None),
        ("Work", "Work", "retry", "States.Timeout"),
        ("Work", "Oops", "catch", "States.ALL"),
        ("Work", "~end", "end", None),
        ("Oops", "~end", "end", None),
        ("Done", "~end", "end", None),
    }
    assert [n.id for n in result.nodes if n.end] == ["Work", "Oops", "Done"]


def test_parallel_and_map_branches_are_flattened_under_their_parent() -> None:
    branch = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    definition = {
        "StartAt": "Fan/out",
        "States": {
            "Fan/out": {"Type": "Parallel", "Branches": [branch, branch], "Next": "Each"},
            "Each": {"Type": "Map", "ItemProcessor": branch, "End": True},
        },
    }
    result = graph(definition)
    nested = {n.id: n.parent for n in result.nodes if n.parent is not None}
    assert nested == {
        "Fan~1out/0/~start": "Fan~1out",
        "Fan~1out/0/~end": "Fan~1out",
        "Fan~1out/0/A": "Fan~1out",
        "Fan~1out/1/~start": "Fan~1out",
        "Fan~1out/1/~end": "Fan~1out",
        "Fan~1out/1/A": "Fan~1out",
        "Each/0/~start": "Each",
        "Each/0/~end": "Each",
        "Each/0/A": "Each",
    }
    assert len({n.id for n in result.nodes}) == len(result.nodes)
    assert edges(definition) >= {
        ("Fan~1out", "Fan~1out/0/A", "branch"),
        ("Fan~1out", "Fan~1out/1/A", "branch"),
        ("Fan~1out/1/~start", "Fan~1out/1/A", "start"),
        ("Fan~1out/1/A", "Fan~1out/1/~end", "end"),
        ("Fan~1out", "Each", "next"),
        ("Each", "Each/0/A", "branch"),
        ("Each", "~end", "end"),
    }


def test_legacy_map_iterator_and_labels() -> None:
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "Iterator": {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}},
                "End": True,
            }
        },
    }
    assert ("M", "M/0/X", "branch") in edges(definition)
    assert choice_label({"Condition": "{% $n > 1 %}", "Next": "x"}) == "$n > 1"
    assert choice_label({"Not": {"Variable": "$.a", "IsNull": True}, "Next": "x"}) == "Not"


def test_jsonata_states_are_marked_and_their_conditions_shown_without_braces() -> None:
    """The machine's QueryLanguage is every state's, nested ones included, unless a state sets
    its own (a JSONata state inside a JSONPath machine, as AWS allows)."""
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Choice",
                "Choices": [{"Condition": "{% $states.input.n > 3 %}", "Next": "Fan"}],
                "Default": "Fan",
            },
            "Fan": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "One", "States": {"One": {"Type": "Succeed"}}},
                "End": True,
            },
        },
    }
    result = graph(definition)
    assert {n.id: n.query_language for n in result.nodes if n.type not in ("Start", "End")} == {
        "Pick": "JSONata",
        "Fan": "JSONata",
        "Fan/0/One": "JSONata",
    }
    assert [e.label for e in result.edges if e.kind == "choice"] == ["$states.input.n > 3"]
    mixed = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "QueryLanguage": "JSONata", "Next": "B"},
            "B": {"Type": "Pass", "End": True},
        },
    }
    assert [n.query_language for n in graph(mixed).nodes if n.type == "Pass"] == [
        "JSONata",
        "JSONPath",
    ]
