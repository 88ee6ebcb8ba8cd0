"""The pure parts of a distributed Map: Map Run ARNs, item batching, failure thresholds.

A distributed Map (``ItemProcessor.ProcessorConfig.Mode: DISTRIBUTED``) runs each item (or
batch of items) as a *child execution* of a Map Run instead of as a frame inside the parent.
The interpreter never does I/O for it: it schedules host tasks with the internal resources
below, and the host answers with ``TaskSucceeded``/``TaskFailed`` like any task:

* :data:`READER` — read the items (``ItemReader``: S3 ``getObject`` / ``listObjectsV2``); the
  answer is the JSON array of items;
* :data:`ITERATION` — one child execution of the Map Run per item or batch; the answer is
  DescribeExecution's shape in PascalCase (``Output`` parsed), a failure ``TaskFailed``;
* :data:`WRITER` — ``ResultWriter``: export the children's results (S3 ``putObject``); the
  answer is ``{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}``.

These resource names only ever come from the interpreter; a Task state naming one is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from app.workflows.asl.paths import payload_size

READER: Final = "smokehouse:mapRun:itemReader"
ITERATION: Final = "smokehouse:mapRun:iteration"
WRITER: Final = "smokehouse:mapRun:resultWriter"
INTERNAL_RESOURCES: Final = frozenset({READER, ITERATION, WRITER})

#: What smokehouse reads at most into one Map Run (AWS: 100 million items). The items live in
#: the parent execution's state until their child starts, so the bound is on that state's size.
MAX_ITEMS: Final = 10_000
MAX_ITEMS_BYTES: Final = 16 * 1024 * 1024
#: AWS's bounds (ItemBatcher, ReaderConfig, Label).
MAX_ITEMS_PER_BATCH_LIMIT: Final = 100_000_000
MAX_INPUT_BYTES_PER_BATCH_LIMIT: Final = 256 * 1024
MAX_LABEL_LENGTH: Final = 40
#: AWS runs at most 10,000 children of a Map Run at once (also what MaxConcurrency 0 means).
DEFAULT_MAX_CONCURRENCY: Final = 10_000

READER_RESOURCES: Final = frozenset(
    {"arn:aws:states:::s3:getObject", "arn:aws:states:::s3:listObjectsV2"}
)
WRITER_RESOURCES: Final = frozenset({"arn:aws:states:::s3:putObject"})
INPUT_TYPES: Final = ("CSV", "JSON", "JSONL", "MANIFEST")


def map_run_arns(state_machine_arn: str, label: str, run_id: str) -> tuple[str, str]:
    """``(map run ARN, the Map Run's state machine ARN)``:
    ``arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<uuid>`` and
    ``arn:aws:states:<region>:<account>:stateMachine:<machine>/<label>``, as AWS names them."""
    machine_arn = f"{state_machine_arn}/{label}"
    run_arn = machine_arn.replace(":stateMachine:", ":mapRun:", 1) + f":{run_id}"
    return run_arn, machine_arn


def run_id_of(map_run_arn: str) -> str:
    """The UUID at the end of a Map Run ARN (the ResultWriter's folder)."""
    return map_run_arn.rsplit(":", 1)[-1]


# --- batching -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batching:
    """``ItemBatcher`` resolved for one run: 0 means no bound."""

    max_items: int = 0
    max_bytes: int = 0
    batch_input: Any = None
    has_batch_input: bool = False


def batch_payload(items: list[Any], batching: Batching) -> dict[str, Any]:
    """One child's input: ``{"BatchInput": ..., "Items": [...]}`` (``BatchInput`` only when
    given)."""
    if batching.has_batch_input:
        return {"BatchInput": batching.batch_input, "Items": items}
    return {"Items": items}


def make_batches(items: list[Any], batching: Batching) -> list[dict[str, Any]]:
    """Group ``items`` in order into child inputs, each with at most ``max_items`` items and,
    when ``max_bytes`` is set, at most that many bytes of compact JSON (``BatchInput`` and the
    ``Items`` wrapper included). An item that alone exceeds ``max_bytes`` gets a batch of its
    own (the child's own 256 KiB input limit still applies to it)."""
    if not items:
        return []
    out: list[dict[str, Any]] = []
    if batching.max_bytes <= 0:
        size = batching.max_items if batching.max_items > 0 else len(items)
        for start in range(0, len(items), size):
            out.append(batch_payload(items[start : start + size], batching))
        return out
    base = payload_size(batch_payload([], batching))  # the wrapper: {"Items":[]} (+ BatchInput)
    current: list[Any] = []
    used = base
    for item in items:
        size = payload_size(item) + (1 if current else 0)  # the comma between items
        full = batching.max_items > 0 and len(current) >= batching.max_items
        if current and (full or used + size > batching.max_bytes):
            out.append(batch_payload(current, batching))
            current, used = [], base
            size = payload_size(item)
        current.append(item)
        used += size
    out.append(batch_payload(current, batching))
    return out


# --- failure thresholds ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tolerance:
    """``ToleratedFailureCount`` / ``ToleratedFailurePercentage`` (None: not set; AWS reports
    0 for both then)."""

    count: int | None = None
    percentage: float | None = None


def exceeds(tolerance: Tolerance, failed: int, total: int) -> bool:
    """Whether ``failed`` (failed or timed-out children) of ``total`` breaks the threshold.

    AWS: the run fails when the failures *exceed* either value; with neither set, one failure
    fails it (percentage 0). The percentage is of all items (here: all children)."""
    if failed <= 0:
        return False
    if tolerance.count is None and tolerance.percentage is None:
        return True
    if tolerance.count is not None and failed > tolerance.count:
        return True
    if tolerance.percentage is not None and total > 0:
        # compare failed/total > pct/100 without float rounding on the exact boundary
        return failed * 100 > tolerance.percentage * total and not math.isclose(
            failed * 100, tolerance.percentage * total
        )
    return False


def exceeded_cause() -> str:
    return "The specified tolerated failure threshold was exceeded"
