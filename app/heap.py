"""Keep a long-lived process's start-up objects out of the cyclic garbage collector.

Everything built at start-up (the GraphQL schema, SQLAlchemy mappers, compiled rules and state
machines, imported modules) lives as long as the process, yet every full collection walks all of
it. ``gc.freeze()`` moves it to the permanent generation: measured on the dashboard's downsample
query, p95 182 → 50 ms (bench/graphql.py). Before a fork (Celery's prefork pool) it also keeps
the children from touching — and so copying — the parent's pages.

A test process starts hundreds of apps: each freeze would make the previous tests' objects
permanent (never freed) and each start would pay a full collection of an ever larger heap. The
test fixtures therefore set ``SMOKEHOUSE_TEST_NO_HEAP_FREEZE=1``; nothing in production does.
"""

from __future__ import annotations

import gc
import os

#: Set by the test suite only (tests/conftest.py): one pytest process starts many apps.
SKIP_VARIABLE = "SMOKEHOUSE_TEST_NO_HEAP_FREEZE"


def freeze_startup_heap() -> None:
    """Call once start-up is done (before forking workers, if any)."""
    if os.environ.get(SKIP_VARIABLE) == "1":
        return
    gc.collect()
    gc.freeze()
