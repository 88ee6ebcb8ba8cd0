"""A distributed Map's ``ResultWriter``: export the Map Run's child executions to S3.

The interpreter schedules :data:`~app.workflows.asl.distributed.WRITER` with
``{"Resource", "Parameters": {"Bucket", "Prefix"}, "WriterConfig", "MapRunArn"}`` once every
child ended. The children's descriptions come from the database (the Map Run's child
executions: :func:`app.workflows.map_runs.service.child_results`), not from the parent's state,
so a run of thousands of children never carries their outputs through the parent.

Written as AWS writes them, under ``<Prefix>/<map run UUID>/``: ``SUCCEEDED_0.json``,
``FAILED_0.json`` (failed, timed out and aborted children), ``PENDING_0.json`` (children that
never ended), each a JSON array (``OutputType: JSONL``: one per line, ``.jsonl``) of
DescribeExecution's shape (``ExecutionArn``, ``Input``, ``InputDetails``, ``Name``, ``Output``,
``OutputDetails``, ``RedriveCount``, ``RedriveStatus``, ``StartDate``, ``StateMachineArn``,
``Status``, ``StopDate``, ``Error``/``Cause``; ``Input``/``Output`` as JSON text), files only
for statuses that have children; then ``manifest.json``: ``{"DestinationBucket", "MapRunArn",
"ResultFiles": {"FAILED": [...], "PENDING": [...], "SUCCEEDED": [{"Key", "Size"}]}}``.
``WriterConfig.Transformation`` ``COMPACT`` writes the succeeded children's outputs only and
``FLATTEN`` flattens outputs that are arrays (failed children stay whole, as AWS documents).

The answer, and so the Map state's result: ``{"MapRunArn", "ResultWriterDetails": {"Bucket",
"Key"}}`` (the manifest's key). Failures: ``States.ResultWriterFailed`` with S3's error.
Puts are idempotent (same keys, same bodies), so an at-least-once rerun is harmless. Subject to
the ``aws-sdk`` egress policy: ``s3:putObject`` must be allowed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from app.workflows.asl import TaskError
from app.workflows.asl import distributed as dist
from app.workflows.asl.errors import RESULT_WRITER_FAILED
from app.workflows.resources import aws_sdk
from app.workflows.resources.base import TaskCall
from app.workflows.resources.item_reader import s3_client

PUT_OBJECT: Final = "arn:aws:states:::s3:putObject"
#: Which result file a child's status goes to.
BUCKETS: Final = {
    "SUCCEEDED": "SUCCEEDED",
    "FAILED": "FAILED",
    "TIMED_OUT": "FAILED",
    "ABORTED": "FAILED",
    "RUNNING": "PENDING",
    "PENDING_REDRIVE": "PENDING",
}
#: Map Run ARN → the child executions' descriptions (DescribeExecution's PascalCase shape).
ChildSource = Callable[[TaskCall, str], list[dict[str, Any]]]


def failed(cause: str) -> TaskError:
    return TaskError(RESULT_WRITER_FAILED, cause)


def folder(prefix: str, map_run_arn: str) -> str:
    """``<Prefix>/<map run UUID>`` (no Prefix: the UUID alone)."""
    prefix = prefix.strip("/")
    run_id = dist.run_id_of(map_run_arn)
    return f"{prefix}/{run_id}" if prefix else run_id


def transform(child: dict[str, Any], transformation: str) -> list[Any]:
    """The entries a child contributes to its file (a list: FLATTEN may give several)."""
    if transformation == "NONE" or child.get("Status") != "SUCCEEDED":
        return [child]
    output = child.get("Output")
    value = json.loads(output) if isinstance(output, str) else output
    if transformation == "FLATTEN" and isinstance(value, list):
        return list(value)
    return [value]


def encode(entries: list[Any], output_type: str) -> bytes:
    if output_type == "JSONL":
        lines = (json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in entries)
        return ("\n".join(lines) + "\n").encode()
    return json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()


def result_files(
    children: list[dict[str, Any]],
    *,
    bucket: str,
    prefix: str,
    map_run_arn: str,
    transformation: str = "NONE",
    output_type: str = "JSON",
) -> tuple[dict[str, bytes], str]:
    """Every object to write (key → body, the manifest last) and the manifest's key (pure)."""
    base = folder(prefix, map_run_arn)
    grouped: dict[str, list[Any]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for child in children:
        status = BUCKETS.get(str(child.get("Status")), "PENDING")
        grouped[status].extend(transform(child, transformation))
    suffix = "jsonl" if output_type == "JSONL" else "json"
    files: dict[str, bytes] = {}
    listed: dict[str, list[dict[str, Any]]] = {name: [] for name in grouped}
    for status, entries in grouped.items():
        if not entries:
            continue
        key = f"{base}/{status}_0.{suffix}"
        files[key] = encode(entries, output_type)
        listed[status].append({"Key": key, "Size": len(files[key])})
    manifest_key = f"{base}/manifest.json"
    manifest = {"DestinationBucket": bucket, "MapRunArn": map_run_arn, "ResultFiles": listed}
    files[manifest_key] = json.dumps(manifest, separators=(",", ":")).encode()
    return files, manifest_key


def write(client: Any, bucket: str, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise failed(
                f"S3 returned {error.get('Code', 'an error')} writing s3://{bucket}/{key}: "
                f"{error.get('Message', str(exc))}"
            ) from None
        except BotoCoreError as exc:
            raise failed(f"Could not reach S3: {exc}") from None


def _children_from_database(call: TaskCall, map_run_arn: str) -> list[dict[str, Any]]:
    from app.workflows.map_runs import service

    return service.child_results(call.settings, map_run_arn)


class ResultWriterResource:
    """The interpreter's ``smokehouse:mapRun:resultWriter`` task."""

    kind = "mapRun"
    transactional = False

    def __init__(self, children: ChildSource | None = None) -> None:
        self.children = children or _children_from_database

    def accepts(self, base: str) -> bool:
        return base == dist.WRITER

    def problem(self, base: str) -> str | None:
        return f"The resource '{base}' is internal to distributed Map; use a ResultWriter"

    def run(self, call: TaskCall) -> Any:
        spec = call.parameters if isinstance(call.parameters, dict) else {}
        if spec.get("Resource") != PUT_OBJECT:
            raise TaskError("States.Runtime", f"unsupported ResultWriter {spec.get('Resource')!r}")
        refused = aws_sdk.refusal(
            f"{aws_sdk.PREFIX}s3:putObject", call.settings.egress.aws_sdk_allow
        )
        if refused is not None:
            raise TaskError("States.Runtime", refused)
        params = spec.get("Parameters") or {}
        bucket, prefix = params.get("Bucket"), params.get("Prefix", "")
        if not isinstance(bucket, str) or not isinstance(prefix, str):
            raise failed("The ResultWriter's Parameters need a Bucket (and a string Prefix).")
        arn = str(spec.get("MapRunArn"))
        config = spec.get("WriterConfig") or {}
        files, manifest_key = result_files(
            self.children(call, arn),
            bucket=bucket,
            prefix=prefix,
            map_run_arn=arn,
            transformation=config.get("Transformation", "NONE"),
            output_type=config.get("OutputType", "JSON"),
        )
        write(s3_client(), bucket, files)
        return {"MapRunArn": arn, "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key}}
