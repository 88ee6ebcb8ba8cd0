"""The pure parts of distributed Map: batching by count and bytes, failure thresholds, Map Run
ARNs, CSV/JSONL parsing, and the ResultWriter's files (properties with hypothesis)."""

from __future__ import annotations

import csv
import io
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.workflows.asl import TaskError
from app.workflows.asl import distributed as dist
from app.workflows.asl.paths import payload_size
from app.workflows.resources.item_reader import parse_csv, parse_json, parse_jsonl
from app.workflows.resources.result_writer import result_files

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def test_map_run_arns() -> None:
    run, machine = dist.map_run_arns(
        "arn:aws:states:us-east-1:123456789012:stateMachine:orders", "Label", "u-1"
    )
    assert run == "arn:aws:states:us-east-1:123456789012:mapRun:orders/Label:u-1"
    assert machine == "arn:aws:states:us-east-1:123456789012:stateMachine:orders/Label"
    assert dist.run_id_of(run) == "u-1"


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(json_values, max_size=30),
    max_items=st.integers(0, 7),
    max_bytes=st.integers(0, 300),
    batch_input=st.none() | json_values,
)
def test_batches_keep_order_and_bounds(
    items: list[Any], max_items: int, max_bytes: int, batch_input: Any
) -> None:
    batching = dist.Batching(max_items, max_bytes, batch_input, batch_input is not None)
    batches = dist.make_batches(items, batching)
    assert [item for batch in batches for item in batch["Items"]] == items
    for batch in batches:
        assert batch["Items"]  # never an empty batch
        if max_items:
            assert len(batch["Items"]) <= max_items
        if max_bytes and len(batch["Items"]) > 1:
            assert payload_size(batch) <= max_bytes  # only a lone oversized item may exceed
        assert ("BatchInput" in batch) == (batch_input is not None)
        if batch_input is not None:
            assert batch["BatchInput"] == batch_input


@settings(max_examples=100, deadline=None)
@given(items=st.lists(st.integers(0, 99), min_size=1, max_size=40), max_bytes=st.integers(12, 80))
def test_byte_batches_are_greedy(items: list[int], max_bytes: int) -> None:
    """Each batch is as full as the byte bound allows: the next item would not have fitted."""
    batching = dist.Batching(0, max_bytes)
    batches = dist.make_batches(items, batching)
    for batch, following in itertools.pairwise(batches):
        grown = {"Items": [*batch["Items"], following["Items"][0]]}
        assert payload_size(grown) > max_bytes


def test_batches_by_count_example() -> None:
    batches = dist.make_batches([1, 2, 3, 4, 5], dist.Batching(2))
    assert batches == [{"Items": [1, 2]}, {"Items": [3, 4]}, {"Items": [5]}]
    assert dist.make_batches([], dist.Batching(2)) == []
    # {"Items":[1,2]} is 15 bytes; a 14-byte bound splits it
    assert dist.make_batches([1, 2], dist.Batching(0, 14)) == [{"Items": [1]}, {"Items": [2]}]
    assert dist.make_batches([1, 2], dist.Batching(0, 15)) == [{"Items": [1, 2]}]


@pytest.mark.parametrize(
    ("count", "percentage", "failed", "total", "exceeded"),
    [
        (None, None, 0, 10, False),
        (None, None, 1, 10, True),  # AWS's default: percentage 0, any failure fails
        (2, None, 2, 10, False),
        (2, None, 3, 10, True),
        (None, 20, 2, 10, False),  # exactly 20 % is not more than 20 %
        (None, 20, 3, 10, True),
        (None, 100, 10, 10, False),  # 100: never fails
        (5, 10, 2, 10, True),  # both set: either one exceeded fails
        (0, None, 1, 10, True),
        (None, 33.3, 1, 3, True),
        (None, 33.34, 1, 3, False),
    ],
)
def test_tolerance_examples(
    count: int | None, percentage: float | None, failed: int, total: int, exceeded: bool
) -> None:
    assert dist.exceeds(dist.Tolerance(count, percentage), failed, total) is exceeded


@given(
    count=st.none() | st.integers(0, 50),
    percentage=st.none() | st.floats(0, 100),
    failed=st.integers(0, 60),
    extra=st.integers(0, 60),
)
def test_tolerance_is_monotonic(
    count: int | None, percentage: float | None, failed: int, extra: int
) -> None:
    """More failures of the same total never un-exceed; a higher threshold never exceeds
    where a lower one did not."""
    total = failed + extra + 1
    tolerance = dist.Tolerance(count, percentage)
    if dist.exceeds(tolerance, failed, total) and failed < total:
        assert dist.exceeds(tolerance, failed + 1, total)
    if count is not None and not dist.exceeds(tolerance, failed, total):
        assert not dist.exceeds(dist.Tolerance(count + 1, percentage), failed, total)
    assert not dist.exceeds(tolerance, 0, total)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.text(alphabet="ab ,|\"'x\n", max_size=5), min_size=2, max_size=2),
        max_size=10,
    ),
    delimiter=st.sampled_from(["COMMA", "PIPE", "SEMICOLON", "TAB"]),
)
def test_csv_round_trips_through_the_csv_writer(rows: list[list[str]], delimiter: str) -> None:
    rows = [row for row in rows if any(row)]  # a blank line is no row (as csv reads it)
    text = io.StringIO()
    sep = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}[delimiter]
    writer = csv.writer(text, delimiter=sep, lineterminator="\n")
    writer.writerow(["h1", "h2"])
    writer.writerows(rows)
    parsed = parse_csv(text.getvalue(), delimiter=delimiter)
    assert parsed == [{"h1": a, "h2": b} for a, b in rows]


def test_csv_given_headers_and_ragged_rows() -> None:
    assert parse_csv("1,2\n3,4\n", header_location="GIVEN", headers=["a", "b"], max_items=1) == [
        {"a": "1", "b": "2"}
    ]
    with pytest.raises(TaskError) as ragged:
        parse_csv("a,b\n1\n")
    assert ragged.value.error == "States.ItemReaderFailed"
    assert "Row 2 has 1 fields but the header has 2" in (ragged.value.cause or "")
    assert parse_csv("") == []


@given(st.lists(json_values, max_size=20))
def test_jsonl_and_json_agree(values: list[Any]) -> None:
    lines = "\n".join(json.dumps(v) for v in values)
    assert parse_jsonl(lines) == values
    assert parse_json(json.dumps(values)) == values


def test_jsonl_bad_line() -> None:
    with pytest.raises(TaskError) as bad:
        parse_jsonl('1\n{"x": \n')
    assert "Line 2 is not valid JSON" in (bad.value.cause or "")


def test_result_files_group_by_status_and_transform() -> None:
    children = [
        {"Status": "SUCCEEDED", "Output": "[1,2]"},
        {"Status": "TIMED_OUT", "Error": "States.Timeout"},
        {"Status": "RUNNING"},
    ]
    files, manifest_key = result_files(
        children,
        bucket="b",
        prefix="",
        map_run_arn="arn:x:mapRun:m/l:rid",
        transformation="COMPACT",
    )
    assert manifest_key == "rid/manifest.json"
    assert json.loads(files["rid/SUCCEEDED_0.json"]) == [[1, 2]]
    assert json.loads(files["rid/FAILED_0.json"]) == [children[1]]
    assert json.loads(files["rid/PENDING_0.json"]) == [children[2]]
    manifest = json.loads(files[manifest_key])
    assert {k: [f["Key"] for f in v] for k, v in manifest["ResultFiles"].items()} == {
        "FAILED": ["rid/FAILED_0.json"],
        "PENDING": ["rid/PENDING_0.json"],
        "SUCCEEDED": ["rid/SUCCEEDED_0.json"],
    }
    assert list(files)[-1] == manifest_key  # the manifest is written last
