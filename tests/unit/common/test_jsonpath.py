"""JSONPath: definite vs indefinite paths, reference paths, filters (Jayway semantics)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.common.jsonpath import (
    MISSING,
    JsonPathError,
    is_path,
    is_reference_path,
    json_equal,
    parse,
)

STORE: dict[str, Any] = {
    "store": {
        "book": [
            {"category": "reference", "author": "Nigel Rees", "price": 8.95},
            {"category": "fiction", "author": "Evelyn Waugh", "price": 12.99},
            {"category": "fiction", "author": "Herman Melville", "isbn": "0-553", "price": 8.99},
        ],
        "bicycle": {"color": "red", "price": 19.95},
    },
    "a.b": 1,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", STORE),
        ("$.store.bicycle.color", "red"),
        ("$['store']['bicycle']['color']", "red"),
        ('$["a.b"]', 1),
        ("$.store.book[0].author", "Nigel Rees"),
        ("$.store.book[-1].author", "Herman Melville"),
        ("$.store.book[3]", MISSING),
        ("$.nope", MISSING),
        ("$.store.bicycle.color.deeper", MISSING),
    ],
)
def test_definite_paths(path: str, expected: Any) -> None:
    assert parse(path).definite
    assert parse(path).get(STORE) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.store.book[*].author", ["Nigel Rees", "Evelyn Waugh", "Herman Melville"]),
        ("$..author", ["Nigel Rees", "Evelyn Waugh", "Herman Melville"]),
        ("$.store.book[0,2].price", [8.95, 8.99]),
        ("$.store.book[1:].price", [12.99, 8.99]),
        ("$.store.book[:2].category", ["reference", "fiction"]),
        ("$.store.book[?(@.isbn)].author", ["Herman Melville"]),
        ("$.store.book[?(@.price < 10)].price", [8.95, 8.99]),
        ("$.store.book[?(@.category == 'fiction' && @.price > 10)].author", ["Evelyn Waugh"]),
        ("$.store.book[?(@.price > 100 || @.author == 'Nigel Rees')].price", [8.95]),
        ("$.store.book[?(!(@.price < 9))].price", [12.99]),
        ("$.store.*.color", ["red"]),
        ("$.store.book[?(@.missing == 1)]", []),
        ("$..price", [8.95, 12.99, 8.99, 19.95]),
    ],
)
def test_indefinite_paths_return_lists(path: str, expected: Any) -> None:
    compiled = parse(path)
    assert not compiled.definite
    assert compiled.get(STORE) == expected


def test_context_paths_are_flagged() -> None:
    path = parse("$$.Execution.Id")
    assert path.context
    assert not path.is_reference_path
    assert path.get({"Execution": {"Id": "x"}}) == "x"


def test_index_past_end_in_payload_templates_is_null() -> None:
    assert parse("$.items[5]").get({"items": [1, 2]}, index_past_end_is_null=True) is None


@pytest.mark.parametrize("text", ["", "a.b", "$.", "$[", "$.a[", "$['a'", "$.a]", "$[?(@.a <)]"])
def test_invalid_paths(text: str) -> None:
    with pytest.raises(JsonPathError):
        parse(text)
    assert not is_path(text)


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("$", True),
        ("$.a.b[0]", True),
        ("$['x y']", True),
        ("$.a[*]", False),
        ("$..a", False),
        ("$$.Execution", False),
        ("$.a[0:1]", False),
        ("nope", False),
    ],
)
def test_reference_paths(text: str, reference: bool) -> None:
    assert is_reference_path(text) is reference


def test_json_equal() -> None:
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal(True, 1)
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})


names = st.text(
    alphabet=st.characters(blacklist_characters=".[]'\"\\ ", min_codepoint=33, max_codepoint=0x2FF),
    min_size=1,
    max_size=8,
)


@given(st.lists(st.one_of(names, st.integers(0, 5)), min_size=1, max_size=6), st.integers())
def test_definite_path_reads_what_was_built(steps: list[Any], leaf: int) -> None:
    doc: Any = leaf
    text = ""
    for step in reversed(steps):
        if isinstance(step, int):
            doc = [None] * step + [doc]
            text = f"[{step}]" + text
        else:
            doc = {step: doc}
            text = f"['{step}']" + text
    assert parse("$" + text).get(doc) == leaf
