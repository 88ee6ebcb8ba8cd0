"""Intrinsic functions: every example of the developer guide, argument rules and limits."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.workflows.asl import errors
from app.workflows.asl.errors import StatesError
from app.workflows.asl.intrinsics import (
    IntrinsicContext,
    IntrinsicSyntaxError,
    evaluate,
    format_value,
    java_round,
    parse_intrinsic,
)

UUID = "11111111-2222-4333-8444-555555555555"


def call(text: str, data: Any = None, context: Any = None, seed: int = 7) -> Any:
    rng = random.Random(seed)
    ctx = IntrinsicContext({} if data is None else data, context or {}, rng.random, lambda: UUID)
    return evaluate(parse_intrinsic(text), ctx)


def fails(text: str, data: Any = None) -> StatesError:
    with pytest.raises(StatesError) as info:
        call(text, data)
    return info.value


NINE = {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]}


# -- documented examples --------------------------------------------------------------------------


def test_format_doc_example() -> None:
    data = {"name": "Arnav", "template": "Hello, my name is {}."}
    assert call("States.Format('Hello, my name is {}.', $.name)", data) == (
        "Hello, my name is Arnav."
    )
    assert call("States.Format($.template, $.name)", data) == "Hello, my name is Arnav."


def test_string_to_json_doc_example() -> None:
    assert call(
        "States.StringToJson($.escapedJsonString)", {"escapedJsonString": '{"foo": "bar"}'}
    ) == {"foo": "bar"}


def test_json_to_string_doc_example() -> None:
    data = {"foo": "bar", "someJson": {"name": "AWS", "aNumber": 2}}
    assert call("States.JsonToString($.someJson)", data) == '{"name":"AWS","aNumber":2}'


def test_array_doc_example() -> None:
    data = {"someJson": {"random": "abcdefg"}, "zebra": "stripe"}
    assert call("States.Array('Foo', 2020, $.someJson, null)", data) == [
        "Foo",
        2020,
        {"random": "abcdefg"},
        None,
    ]


def test_array_partition_doc_example() -> None:
    assert call("States.ArrayPartition($.inputArray, 4)", NINE) == [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [9],
    ]


def test_array_contains_doc_example() -> None:
    assert call("States.ArrayContains($.inputArray, $.lookingFor)", {**NINE, "lookingFor": 5})


def test_array_range_doc_example() -> None:
    assert call("States.ArrayRange(1, 9, 2)") == [1, 3, 5, 7, 9]


def test_array_get_item_doc_example() -> None:
    assert call("States.ArrayGetItem($.inputArray, $.index)", {**NINE, "index": 5}) == 6


def test_array_length_doc_example() -> None:
    assert call("States.ArrayLength($.inputArray)", NINE) == 9


def test_array_unique_doc_example() -> None:
    data = {"inputArray": [1, 2, 3, 3, 3, 3, 3, 3, 4]}
    assert call("States.ArrayUnique($.inputArray)", data) == [1, 2, 3, 4]


def test_base64_doc_examples() -> None:
    assert call("States.Base64Encode($.input)", {"input": "Data to encode"}) == (
        "RGF0YSB0byBlbmNvZGU="
    )
    assert call("States.Base64Decode($.base64)", {"base64": "RGF0YSB0byBlbmNvZGU="}) == (
        "Data to encode"
    )


def test_hash_doc_example() -> None:
    # The guide prints a 39-character digest (a typo); this is SHA-1("input data").
    data = {"Data": "input data", "Algorithm": "SHA-1"}
    assert call("States.Hash($.Data, $.Algorithm)", data) == (
        "aaff4a450a104cd177d28d18d74485e8cae074b7"
    )


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        ("MD5", "812f45842bc6d66ee14572ce20db8e86"),
        ("SHA-256", "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"),
        (
            "SHA-384",
            "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562",
        ),
        (
            "SHA-512",
            "6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4",
        ),
    ],
)
def test_hash_algorithms(algorithm: str, digest: str) -> None:
    assert call(f"States.Hash('input data', '{algorithm}')") == digest


def test_json_merge_doc_example() -> None:
    data = {"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}}
    assert call("States.JsonMerge($.json1, $.json2, false)", data) == {
        "a": {"a3": 1, "a4": 2},
        "b": 2,
        "c": 3,
    }


def test_math_random_doc_example() -> None:
    data = {"start": 1, "end": 999}
    for seed in range(50):
        value = call("States.MathRandom($.start, $.end)", data, seed=seed)
        assert 1 <= value < 999
    seeded = {call("States.MathRandom($.start, $.end, 7)", data, seed=s) for s in range(5)}
    assert len(seeded) == 1  # a seed makes it reproducible whatever the random source


def test_math_add_doc_example() -> None:
    assert call("States.MathAdd($.value1, $.step)", {"value1": 111, "step": -1}) == 110


def test_string_split_doc_example() -> None:
    data = {"inputString": "This.is+a,test=string", "splitter": ".+,="}
    assert call("States.StringSplit($.inputString, $.splitter)", data) == [
        "This",
        "is",
        "a",
        "test",
        "string",
    ]


def test_uuid_uses_injected_factory() -> None:
    assert call("States.UUID()") == UUID


# -- argument rules and failures ------------------------------------------------------------------


def test_format_escapes_and_rendering() -> None:
    assert call(r"States.Format('\{\} {} \'q\'', 'x')") == "{} x 'q'"
    assert call("States.Format('{} {} {} {}', 1, true, null, 1.5)") == "1 true null 1.5"
    assert call("States.Format('{}|{}', $.o, $.a)", {"o": {"a": 1, "b": []}, "a": [1, "x"]}) == (
        "{a=1, b=[]}|[1, x]"
    )
    assert fails("States.Format('{} {}', 'one')").error == errors.INTRINSIC_FAILURE


def test_missing_path_argument_is_runtime_naming_the_whole_expression() -> None:
    err = fails("States.Format('{}', States.Format('{}', $.nope))", {"other": 1})
    assert err.error == errors.RUNTIME
    assert err.cause == (
        "The function 'States.Format('{}', States.Format('{}', $.nope))' had the following "
        "error: The JsonPath argument for the field '$.nope' could not be found in the input "
        "'{\"other\":1}'"
    )


def test_explicit_null_argument_is_formatted() -> None:
    assert call("States.Format('{}', $.nul)", {"nul": None}) == "null"


@pytest.mark.parametrize(
    "text",
    [
        "States.ArrayGetItem($.inputArray, 9)",
        "States.ArrayGetItem($.inputArray, -1)",
        "States.ArrayPartition($.inputArray, 0)",
        "States.ArrayRange(1, 2000, 1)",
        "States.ArrayRange(1, 9, 0)",
        "States.ArrayLength('not an array')",
        "States.Base64Decode('not base64!!!')",
        "States.Hash('x', 'SHA256')",
        "States.Hash(1, 'MD5')",
        "States.JsonMerge($.a, $.a, true)",
        "States.JsonMerge($.a, 1, false)",
        "States.MathAdd(2147483648, 1)",
        "States.MathRandom(5, 5)",
        "States.StringSplit('abc', '')",
        "States.StringToJson('{nope')",
    ],
)
def test_argument_rules_are_intrinsic_failures(text: str) -> None:
    err = fails(text, {**NINE, "a": {"x": 1}})
    assert err.error == errors.INTRINSIC_FAILURE
    assert err.cause is not None
    assert err.cause.startswith(f"The function '{text}' had the following error: ")


def test_base64_length_limit() -> None:
    assert len(call("States.Base64Encode($.s)", {"s": "a" * 10000})) == 13336
    assert fails("States.Base64Encode($.s)", {"s": "a" * 10001}).error == errors.INTRINSIC_FAILURE


def test_math_rounds_like_java() -> None:
    assert call("States.MathAdd(1.5, 1)") == 3
    assert call("States.MathAdd(-2.5, 0)") == -2
    assert java_round(2.5) == 3
    assert call("States.ArrayRange(9, 1, -4)") == [9, 5, 1]


def test_array_unique_and_contains_use_json_equality() -> None:
    assert call("States.ArrayUnique($.a)", {"a": [1, 1.0, {"k": 1}, {"k": 1.0}, True]}) == [
        1,
        {"k": 1},
        True,
    ]
    assert not call("States.ArrayContains($.a, 1)", {"a": [True]})


@pytest.mark.parametrize(
    "text",
    [
        "States.Nope()",
        "States.Format()",
        "States.UUID(1)",
        "States.ArrayLength($.a, $.b)",
        "States.Format('x'",
        "States.Format('x') trailing",
        "States.Array(bogus)",
        "States.Format('unterminated)",
    ],
)
def test_syntax_errors(text: str) -> None:
    with pytest.raises(IntrinsicSyntaxError):
        parse_intrinsic(text)


def test_nesting_limit() -> None:
    nested = "States.Array(" * 10 + ")" * 10
    assert parse_intrinsic(nested)
    with pytest.raises(IntrinsicSyntaxError):
        parse_intrinsic("States.Array(" * 11 + ")" * 11)


def test_path_arguments_with_commas_and_context() -> None:
    data = {"a,b": 1, "list": [{"v": 2}, {"v": 3}]}
    assert call(
        "States.Array($['a,b'], $.list[?(@.v > 2)].v, $$.Execution.Id)",
        data,
        {"Execution": {"Id": "e"}},
    ) == [1, [3], "e"]


# -- properties -----------------------------------------------------------------------------------

plain = st.text(alphabet=st.characters(blacklist_characters="{}\\'", codec="utf-8"), max_size=10)
args = st.one_of(st.text(max_size=8), st.integers(-(10**6), 10**6), st.booleans(), st.none())


@given(st.lists(plain, min_size=1, max_size=5), st.data())
def test_format_interleaves_arguments(pieces: list[str], data: st.DataObject) -> None:
    values = data.draw(st.lists(args, min_size=len(pieces) - 1, max_size=len(pieces) - 1))
    template = "{}".join(pieces)
    result = call(_format_call(len(values)), {"t": template, "v": values})
    expected = pieces[0] + "".join(
        format_value(v) + p for v, p in zip(values, pieces[1:], strict=True)
    )
    assert result == expected


def _format_call(n: int) -> str:
    return "States.Format($.t" + "".join(f", $.v[{i}]" for i in range(n)) + ")"


@given(st.lists(st.integers(-5, 5), max_size=30), st.integers(1, 7))
def test_array_partition_concatenates_back(items: list[int], size: int) -> None:
    chunks = call(f"States.ArrayPartition($.a, {size})", {"a": items})
    assert [x for chunk in chunks for x in chunk] == items
    assert all(len(c) == size for c in chunks[:-1])


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_base64_round_trip(text: str) -> None:
    encoded = call("States.Base64Encode($.s)", {"s": text})
    assert call("States.Base64Decode($.s)", {"s": encoded}) == text


@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(-50, 50).filter(bool))
def test_array_range_matches_python_range(start: int, end: int, step: int) -> None:
    expected = list(range(start, end + (1 if step > 0 else -1), step))
    if len(expected) > 1000:
        assert fails(f"States.ArrayRange({start}, {end}, {step})").error == (
            errors.INTRINSIC_FAILURE
        )
    else:
        assert call(f"States.ArrayRange({start}, {end}, {step})") == expected


@given(st.integers(-(2**31), 2**31 - 2), st.integers(1, 1000), st.integers(0, 10**6))
def test_math_random_stays_in_range(start: int, width: int, seed: int) -> None:
    end = min(start + width, 2**31 - 1)
    value = call(f"States.MathRandom({start}, {end})", seed=seed)
    assert start <= value < end


def test_json_to_string_is_compact_json() -> None:
    value = {"a": [1, {"b": None}], "c": "é"}
    assert json.loads(call("States.JsonToString($.v)", {"v": value})) == value
    assert re.fullmatch(r"[^ ]+", call("States.JsonToString($.v)", {"v": value}))
