"""A distributed Map's ``ItemReader``: read the items from S3-compatible storage.

The interpreter schedules :data:`~app.workflows.asl.distributed.READER` with
``{"Resource", "Parameters", "ReaderConfig", "MapRunArn"}``; this resource answers with the JSON
array of items, a durable task retried like any other. boto3 follows AWS's standard variables
(``AWS_ENDPOINT_URL_S3``, ``AWS_DEFAULT_REGION``, credentials), so MinIO or moto work.

* ``arn:aws:states:::s3:getObject`` with ``ReaderConfig.InputType``: ``JSON`` (an array),
  ``JSONL`` (one value per line), ``CSV`` (``CSVHeaderLocation`` ``FIRST_ROW`` or ``GIVEN`` with
  ``CSVHeaders``; ``CSVDelimiter`` ``COMMA``/``PIPE``/``SEMICOLON``/``SPACE``/``TAB``; each row
  an object of strings) or ``MANIFEST`` (an S3 Inventory ``manifest.json``: the rows of its CSV
  files, gzip or not, as objects named by ``fileSchema``);
* ``arn:aws:states:::s3:listObjectsV2``: one item per object, ``{"Etag", "Key",
  "LastModified" (epoch seconds), "Size", "StorageClass"}`` as AWS gives them, every page.

``ReaderConfig.MaxItems`` stops early. Failures are ``States.ItemReaderFailed`` with S3's error
in the cause. smokehouse reads at most :data:`~app.workflows.asl.distributed.MAX_ITEMS` items
and :data:`~app.workflows.asl.distributed.MAX_ITEMS_BYTES` bytes (AWS: 100 million items);
beyond that the run fails with a cause saying so — set ``MaxItems`` or split the input.

The calls go out with the server's credentials, so they are subject to the same egress policy as
``aws-sdk`` tasks: ``s3:getObject`` / ``s3:listObjectsV2`` must be allowed by
``SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW`` (``States.Runtime`` otherwise).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from app.workflows.asl import TaskError
from app.workflows.asl import distributed as dist
from app.workflows.asl.errors import ITEM_READER_FAILED
from app.workflows.resources import aws_sdk
from app.workflows.resources.base import TaskCall

DELIMITERS: Final = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}
GET_OBJECT: Final = "arn:aws:states:::s3:getObject"
LIST_OBJECTS: Final = "arn:aws:states:::s3:listObjectsV2"
_ACTIONS: Final = {GET_OBJECT: "getObject", LIST_OBJECTS: "listObjectsV2"}
_clients: dict[tuple[str | None, str | None], Any] = {}
_lock = threading.Lock()


def s3_client() -> Any:
    """A boto3 S3 client for the current endpoint variables (cached per endpoint)."""
    key = (os.environ.get("AWS_ENDPOINT_URL_S3"), os.environ.get("AWS_ENDPOINT_URL"))
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = boto3.session.Session().client("s3")
    return client


def failed(cause: str) -> TaskError:
    return TaskError(ITEM_READER_FAILED, cause)


def too_many() -> TaskError:
    return failed(
        f"The ItemReader read more than {dist.MAX_ITEMS} items; smokehouse runs at most "
        f"{dist.MAX_ITEMS} items in one Map Run (set ReaderConfig.MaxItems or split the input)."
    )


def _limit(max_items: int | None) -> int:
    """How many items to read: MaxItems, and never more than smokehouse's bound + 1 (to tell
    "exactly the bound" from "more")."""
    return min(max_items, dist.MAX_ITEMS) if max_items else dist.MAX_ITEMS + 1


def _take(items: Iterator[Any], max_items: int | None) -> list[Any]:
    out: list[Any] = []
    limit = _limit(max_items)
    for item in items:
        if len(out) >= limit:
            break
        out.append(item)
    if len(out) > dist.MAX_ITEMS:
        raise too_many()
    return out


# --- parsing (pure) -------------------------------------------------------------------------------


def parse_json(text: str, max_items: int | None = None) -> list[Any]:
    """A JSON file holding an array."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise failed(f"The object is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise failed("Attempting to map over non-iterable node: the JSON object is not an array.")
    return _take(iter(value), max_items)


def parse_jsonl(text: str, max_items: int | None = None) -> list[Any]:
    """JSON Lines: one JSON value per non-blank line."""

    def values() -> Iterator[Any]:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise failed(f"Line {number} is not valid JSON: {exc}") from None

    return _take(values(), max_items)


def parse_csv(
    text: str,
    *,
    header_location: str = "FIRST_ROW",
    headers: list[str] | None = None,
    delimiter: str = "COMMA",
    max_items: int | None = None,
) -> list[dict[str, str]]:
    """CSV rows as objects of strings, keyed by the first row or by ``headers`` (GIVEN)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[delimiter])
    rows = (row for row in reader if row)
    if header_location == "FIRST_ROW":
        first = next(rows, None)
        if first is None:
            return []
        names = first
    else:
        if not headers:
            raise failed("CSVHeaders are required when CSVHeaderLocation is GIVEN.")
        names = headers

    def items() -> Iterator[dict[str, str]]:
        for number, row in enumerate(rows, 2 if header_location == "FIRST_ROW" else 1):
            if len(row) != len(names):
                raise failed(f"Row {number} has {len(row)} fields but the header has {len(names)}.")
            yield dict(zip(names, row, strict=True))

    return _take(items(), max_items)


# --- S3 -------------------------------------------------------------------------------------------


def _s3_error(exc: Exception, bucket: Any, key: Any = None) -> TaskError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        what = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}"
        return failed(
            f"S3 returned {error.get('Code', 'an error')} for {what}: "
            f"{error.get('Message', str(exc))}"
        )
    return failed(f"Could not reach S3: {exc}")


def get_text(client: Any, bucket: str, key: str, version: str | None = None) -> str:
    """An object's body as text (gunzipped when it is gzip), within smokehouse's byte bound."""
    extra = {"VersionId": version} if version else {}
    try:
        response = client.get_object(Bucket=bucket, Key=key, **extra)
        if response.get("ContentLength", 0) > dist.MAX_ITEMS_BYTES:
            raise failed(
                f"The object s3://{bucket}/{key} is {response['ContentLength']} bytes; "
                f"smokehouse reads at most {dist.MAX_ITEMS_BYTES} bytes of items."
            )
        data: bytes = response["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, bucket, key) from None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise failed(f"The object s3://{bucket}/{key} is not UTF-8 text.") from None


def list_objects(client: Any, params: dict[str, Any], max_items: int | None) -> list[Any]:
    """Every object ``ListObjectsV2`` lists for ``params`` (all pages)."""

    def objects() -> Iterator[dict[str, Any]]:
        paginator = client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(**params):
                for obj in page.get("Contents", ()):
                    modified = obj.get("LastModified")
                    yield {
                        "Etag": obj.get("ETag"),
                        "Key": obj.get("Key"),
                        "LastModified": int(modified.timestamp())
                        if isinstance(modified, datetime)
                        else modified,
                        "Size": obj.get("Size"),
                        "StorageClass": obj.get("StorageClass", "STANDARD"),
                    }
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, params.get("Bucket")) from None

    return _take(objects(), max_items)


def read_manifest(client: Any, text: str, max_items: int | None) -> list[Any]:
    """An S3 Inventory manifest: the rows of its CSV files, named by ``fileSchema``."""
    try:
        manifest = json.loads(text)
        bucket = manifest.get("destinationBucket", "").removeprefix("arn:aws:s3:::")
        schema = [name.strip() for name in manifest["fileSchema"].split(",")]
        files = manifest["files"]
    except (ValueError, KeyError, AttributeError, TypeError):
        raise failed("The object is not an S3 Inventory manifest.json.") from None
    if manifest.get("fileFormat", "CSV") != "CSV":
        raise failed("Only CSV S3 Inventory reports can be read.")
    items: list[Any] = []
    for entry in files:
        body = get_text(client, bucket, entry["key"])
        remaining = None if not max_items else max_items - len(items)
        items.extend(parse_csv(body, header_location="GIVEN", headers=schema, max_items=remaining))
        if (max_items and len(items) >= max_items) or len(items) > dist.MAX_ITEMS:
            break
    return _take(iter(items), max_items)


def read_items(client: Any, resource: str, params: dict[str, Any], config: dict[str, Any]) -> Any:
    """The items for one ItemReader call."""
    max_items = config.get("MaxItems") or None
    if resource == LIST_OBJECTS:
        return list_objects(client, params, max_items)
    bucket, key = params.get("Bucket"), params.get("Key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise failed("The ItemReader's Parameters need a Bucket and a Key.")
    text = get_text(client, bucket, key, params.get("VersionId"))
    kind = config.get("InputType")
    if kind == "JSON":
        return parse_json(text, max_items)
    if kind == "JSONL":
        return parse_jsonl(text, max_items)
    if kind == "CSV":
        return parse_csv(
            text,
            header_location=config.get("CSVHeaderLocation", "FIRST_ROW"),
            headers=config.get("CSVHeaders"),
            delimiter=config.get("CSVDelimiter", "COMMA"),
            max_items=max_items,
        )
    if kind == "MANIFEST":
        return read_manifest(client, text, max_items)
    raise failed(f"Unsupported InputType {kind!r}.")


class ItemReaderResource:
    """The interpreter's ``smokehouse:mapRun:itemReader`` task."""

    kind = "mapRun"
    transactional = False

    def accepts(self, base: str) -> bool:
        return base == dist.READER

    def problem(self, base: str) -> str | None:
        return f"The resource '{base}' is internal to distributed Map; use an ItemReader"

    def run(self, call: TaskCall) -> Any:
        spec = call.parameters if isinstance(call.parameters, dict) else {}
        resource = spec.get("Resource")
        if resource not in _ACTIONS:
            raise TaskError("States.Runtime", f"unsupported ItemReader resource {resource!r}")
        refused = aws_sdk.refusal(
            f"{aws_sdk.PREFIX}s3:{_ACTIONS[resource]}", call.settings.egress.aws_sdk_allow
        )
        if refused is not None:
            raise TaskError("States.Runtime", refused)
        params = spec.get("Parameters") or {}
        if not isinstance(params, dict):
            raise failed("The ItemReader's Parameters must be an object.")
        return read_items(s3_client(), resource, params, spec.get("ReaderConfig") or {})
