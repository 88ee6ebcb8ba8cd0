"""A distributed Map's ItemReader and ResultWriter against S3 (moto's server, boto3 following
``AWS_ENDPOINT_URL``): every InputType, listObjectsV2 with pages, MaxItems, smokehouse's item
bound, S3's errors as ``States.ItemReaderFailed``/``States.ResultWriterFailed``, the egress
policy, and the files ResultWriter writes (AWS's layout: ``<Prefix>/<run id>/manifest.json``,
``SUCCEEDED_0.json``, ``FAILED_0.json``). Sources: "ItemReader (Map)" and "ResultWriter (Map)"
in the Step Functions developer guide."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from app.config import Settings, load_settings
from app.workflows.asl import TaskError
from app.workflows.asl import distributed as dist
from app.workflows.resources.base import TaskCall
from app.workflows.resources.item_reader import ItemReaderResource, read_items, s3_client
from app.workflows.resources.result_writer import ResultWriterResource
from tests.services import moto_server

pytestmark = [pytest.mark.integration]

RUN = (
    "arn:aws:states:us-east-1:123456789012:mapRun:orders/Orders:"
    "0f6c1d5e-8a0a-4f6f-9d33-1e9d2b6f0001"
)


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_server():
        client = boto3.client("s3")
        client.create_bucket(Bucket="items-in")
        yield client


def settings(allow: str) -> Settings:
    return load_settings(egress={"aws_sdk_allow": allow})


def call(resource: str, parameters: Any, allow: str = "s3:*") -> TaskCall:
    return TaskCall(
        resource=resource,
        parameters=parameters,
        settings=settings(allow),
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:orders:e1",
        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:orders",
        state_name="M",
        ref="M@1.0#reader",
    )


def put(s3: Any, key: str, body: str | bytes) -> None:
    s3.put_object(Bucket="items-in", Key=key, Body=body.encode() if isinstance(body, str) else body)


def read(resource: str, params: dict[str, Any], config: dict[str, Any]) -> Any:
    return read_items(s3_client(), resource, params, config)


GET = "arn:aws:states:::s3:getObject"


def test_json_jsonl_and_max_items(s3: Any) -> None:
    put(s3, "items.json", json.dumps([{"n": i} for i in range(5)]))
    put(s3, "items.jsonl", "\n".join(json.dumps({"n": i}) for i in range(5)) + "\n\n")
    params = {"Bucket": "items-in", "Key": "items.json"}
    assert read(GET, params, {"InputType": "JSON"}) == [{"n": i} for i in range(5)]
    assert read(GET, params, {"InputType": "JSON", "MaxItems": 2}) == [{"n": 0}, {"n": 1}]
    lines = {"Bucket": "items-in", "Key": "items.jsonl"}
    assert read(GET, lines, {"InputType": "JSONL", "MaxItems": 3}) == [{"n": i} for i in range(3)]


def test_csv_first_row_given_headers_and_delimiters(s3: Any) -> None:
    put(s3, "ratings.csv", 'movie,rating\nAlien,5\n"Up, again",4\n')
    put(s3, "piped.csv", "Alien|5\nUp|4\n")
    first = read(GET, {"Bucket": "items-in", "Key": "ratings.csv"}, {"InputType": "CSV"})
    assert first == [{"movie": "Alien", "rating": "5"}, {"movie": "Up, again", "rating": "4"}]
    given = read(
        GET,
        {"Bucket": "items-in", "Key": "piped.csv"},
        {
            "InputType": "CSV",
            "CSVHeaderLocation": "GIVEN",
            "CSVHeaders": ["movie", "rating"],
            "CSVDelimiter": "PIPE",
        },
    )
    assert given == [{"movie": "Alien", "rating": "5"}, {"movie": "Up", "rating": "4"}]


def test_manifest_reads_the_inventory_files(s3: Any) -> None:
    put(
        s3,
        "inv/data/1.csv.gz",
        gzip.compress(b'"items-in","a.txt","10"\n"items-in","b.txt","20"\n'),
    )
    put(s3, "inv/data/2.csv", '"items-in","c.txt","30"\n')
    manifest = {
        "sourceBucket": "items-in",
        "destinationBucket": "arn:aws:s3:::items-in",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size",
        "files": [{"key": "inv/data/1.csv.gz"}, {"key": "inv/data/2.csv"}],
    }
    put(s3, "inv/manifest.json", json.dumps(manifest))
    items = read(GET, {"Bucket": "items-in", "Key": "inv/manifest.json"}, {"InputType": "MANIFEST"})
    assert [(i["Key"], i["Size"]) for i in items] == [
        ("a.txt", "10"),
        ("b.txt", "20"),
        ("c.txt", "30"),
    ]


def test_list_objects_v2_pages_through_every_object(s3: Any) -> None:
    s3.create_bucket(Bucket="many")
    for i in range(7):
        s3.put_object(Bucket="many", Key=f"logs/{i}.txt", Body=b"x" * i)
    items = read(
        "arn:aws:states:::s3:listObjectsV2", {"Bucket": "many", "Prefix": "logs/", "MaxKeys": 3}, {}
    )
    assert [i["Key"] for i in items] == [f"logs/{i}.txt" for i in range(7)]
    assert sorted(items[0]) == ["Etag", "Key", "LastModified", "Size", "StorageClass"]
    assert isinstance(items[0]["LastModified"], int)
    assert items[6]["Size"] == 6


def test_errors_are_item_reader_failed(s3: Any) -> None:
    with pytest.raises(TaskError) as missing:
        read(GET, {"Bucket": "items-in", "Key": "nope.json"}, {"InputType": "JSON"})
    assert missing.value.error == "States.ItemReaderFailed"
    assert "NoSuchKey" in (missing.value.cause or "")
    put(s3, "object.json", '{"not": "an array"}')
    with pytest.raises(TaskError) as shape:
        read(GET, {"Bucket": "items-in", "Key": "object.json"}, {"InputType": "JSON"})
    assert shape.value.error == "States.ItemReaderFailed"


def test_more_items_than_smokehouse_runs_is_refused_clearly(s3: Any) -> None:
    put(s3, "huge.jsonl", "\n".join("1" for _ in range(dist.MAX_ITEMS + 1)))
    with pytest.raises(TaskError) as too_many:
        read(GET, {"Bucket": "items-in", "Key": "huge.jsonl"}, {"InputType": "JSONL"})
    assert too_many.value.error == "States.ItemReaderFailed"
    assert f"at most {dist.MAX_ITEMS} items" in (too_many.value.cause or "")
    # MaxItems within the bound reads fine
    capped = read(
        GET, {"Bucket": "items-in", "Key": "huge.jsonl"}, {"InputType": "JSONL", "MaxItems": 3}
    )
    assert capped == [1, 1, 1]


def test_reader_resource_obeys_the_egress_policy(s3: Any) -> None:
    put(s3, "two.json", "[1, 2]")
    spec = {
        "Resource": GET,
        "Parameters": {"Bucket": "items-in", "Key": "two.json"},
        "ReaderConfig": {"InputType": "JSON"},
        "MapRunArn": RUN,
    }
    assert ItemReaderResource().run(call(dist.READER, spec, allow="s3:getObject")) == [1, 2]
    with pytest.raises(TaskError) as refused:
        ItemReaderResource().run(call(dist.READER, spec, allow=""))
    assert refused.value.error == "States.Runtime"
    assert "SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW=s3:getObject" in (refused.value.cause or "")


def child(index: int, status: str, output: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ExecutionArn": f"arn:aws:states:us-east-1:123456789012:execution:orders/Orders:c{index}",
        "Input": json.dumps({"i": index}),
        "Status": status,
    }
    if status == "SUCCEEDED":
        out["Output"] = json.dumps(output)
    else:
        out.update(Error="Boom", Cause="bad")
    return out


def test_result_writer_writes_aws_layout(s3: Any) -> None:
    s3.create_bucket(Bucket="results-out")
    children = [child(0, "SUCCEEDED", [1, 2]), child(1, "FAILED"), child(2, "SUCCEEDED", [3])]
    writer = ResultWriterResource(lambda _call, _arn: children)
    spec = {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": "results-out", "Prefix": "runs/"},
        "WriterConfig": {"Transformation": "NONE", "OutputType": "JSON"},
        "MapRunArn": RUN,
    }
    answer = writer.run(call(dist.WRITER, spec))
    run_id = dist.run_id_of(RUN)
    assert answer == {
        "MapRunArn": RUN,
        "ResultWriterDetails": {"Bucket": "results-out", "Key": f"runs/{run_id}/manifest.json"},
    }
    manifest = json.loads(
        s3.get_object(Bucket="results-out", Key=f"runs/{run_id}/manifest.json")["Body"].read()
    )
    assert manifest["DestinationBucket"] == "results-out"
    assert manifest["MapRunArn"] == RUN
    assert manifest["ResultFiles"]["PENDING"] == []
    [succeeded] = manifest["ResultFiles"]["SUCCEEDED"]
    assert succeeded["Key"] == f"runs/{run_id}/SUCCEEDED_0.json"
    body = s3.get_object(Bucket="results-out", Key=succeeded["Key"])["Body"].read()
    assert succeeded["Size"] == len(body)
    assert json.loads(body) == [children[0], children[2]]
    [failed] = manifest["ResultFiles"]["FAILED"]
    assert json.loads(s3.get_object(Bucket="results-out", Key=failed["Key"])["Body"].read()) == [
        children[1]
    ]
    # FLATTEN as JSON Lines: succeeded outputs flattened, failed children whole
    spec["WriterConfig"] = {"Transformation": "FLATTEN", "OutputType": "JSONL"}
    spec["Parameters"] = {"Bucket": "results-out", "Prefix": ""}
    writer.run(call(dist.WRITER, spec))
    lines = (
        s3.get_object(Bucket="results-out", Key=f"{run_id}/SUCCEEDED_0.jsonl")["Body"]
        .read()
        .decode()
    )
    assert [json.loads(line) for line in lines.splitlines()] == [1, 2, 3]


def test_result_writer_errors(s3: Any) -> None:
    writer = ResultWriterResource(lambda _call, _arn: [child(0, "SUCCEEDED", 1)])
    spec = {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": "no-such-bucket", "Prefix": "x"},
        "MapRunArn": RUN,
    }
    with pytest.raises(TaskError) as missing:
        writer.run(call(dist.WRITER, spec))
    assert missing.value.error == "States.ResultWriterFailed"
    assert "NoSuchBucket" in (missing.value.cause or "")
    with pytest.raises(TaskError) as refused:
        writer.run(call(dist.WRITER, spec, allow="s3:getObject"))
    assert refused.value.error == "States.Runtime"
