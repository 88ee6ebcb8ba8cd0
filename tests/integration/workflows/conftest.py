"""One workflow stack per mode (embedded, production) shared by this package's tests, plus a
moto server that the ``aws-sdk`` resources of the workers and the API reach through AWS's
standard ``AWS_ENDPOINT_URL``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from tests.integration.workflows.stack import Stack, stack
from tests.services import moto_server


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    with moto_server() as env:
        yield env


@pytest.fixture(scope="session", params=["embedded", "production"])
def wf(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    aws_env: dict[str, str],
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"wf-{request.param}")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        patch.chdir(tmp)
        patch.setenv("SMOKEHOUSE_TEST_RECORD_DIR", str(tmp / "records"))
        with stack(request.param, tmp, aws_env) as built:
            yield built


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A state machine (or activity) name unique to this test and mode across modules: the
    stack is shared, and two modules may well both have a ``test_heartbeat_timeout``."""
    module = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    name: str = request.node.name.replace("[", "-").replace("]", "").replace("test_", "")
    full = f"{module}-{name}"
    if len(full) <= 64:  # a rule may be named after it too (EventBridge: at most 64)
        return full
    return f"{full[:55]}-{hashlib.sha256(full.encode()).hexdigest()[:8]}"
