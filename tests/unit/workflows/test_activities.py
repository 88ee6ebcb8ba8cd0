"""Activities' pure pieces: ARNs as AWS checks them, the wake-up channel, the encryption
configuration, and the long poll's wait (with a fake transport and a fake clock-free check)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.aws.errors import AwsError
from app.common import long_poll
from app.workflows.activities import api as activities_api
from app.workflows.activities import wake
from app.workflows.activities.arns import activity_arn, activity_name, is_activity
from app.workflows.activities.service import _encryption

#: What AWS allows in a name (workflows.arns.check_name's complement, ASCII for brevity).
NAMES = st.text(
    st.characters(
        min_codepoint=33, max_codepoint=126, exclude_characters='<>{}[]?*"#%\\^|~`$&,;:/'
    ),
    min_size=1,
    max_size=80,
)


@given(name=NAMES, region=st.sampled_from(["us-east-1", "eu-west-3"]))
def test_arn_round_trip(name: str, region: str) -> None:
    arn = activity_arn(region, "123456789012", name)
    assert is_activity(arn)
    assert activity_name(arn) == name


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        ("", "Invalid ARN prefix: "),
        ("not-an-arn", "Invalid ARN prefix: not-an-arn"),
        (
            "arn:aws:states:us-east-1:123456789012:stateMachine:m",
            "Resource type not valid in this context: stateMachine",
        ),
        (
            "arn:aws:states:us-east-1:123456789012:activity:a:b",
            "Invalid ARN prefix: arn:aws:states:us-east-1:123456789012:activity:a:b",
        ),
    ],
)
def test_invalid_arns(arn: str, message: str) -> None:
    with pytest.raises(AwsError) as exc:
        activity_name(arn)
    assert exc.value.code == "InvalidArn"
    assert exc.value.message == f"Invalid Arn: '{message}'"


def test_task_resources_that_are_not_activities() -> None:
    assert not is_activity("arn:aws:states:::lambda:invoke")
    assert not is_activity("arn:aws:states:us-east-1:123456789012:stateMachine:m")
    assert not is_activity("arn:aws:lambda:us-east-1:123456789012:function:f")


@given(name=NAMES)
def test_channels_are_valid_live_channels(name: str) -> None:
    channel = wake.channel(activity_arn("us-east-1", "123456789012", name + "+#"))
    assert re.fullmatch(r"sfn-activity:[0-9a-f]{40}", channel)


def test_encryption_configuration() -> None:
    assert _encryption(None) is None
    assert _encryption({"type": "AWS_OWNED_KEY"}) == {"type": "AWS_OWNED_KEY"}
    kms = {"type": "CUSTOMER_MANAGED_KMS_KEY", "kmsKeyId": "alias/k"}
    assert _encryption(kms) == kms
    for bad in (
        {"type": "CUSTOMER_MANAGED_KMS_KEY"},
        {"type": "AWS_OWNED_KEY", "kmsKeyId": "alias/k"},
        {"type": "PLAINTEXT"},
    ):
        with pytest.raises(AwsError) as exc:
            _encryption(bad)
        assert exc.value.code == "InvalidEncryptionConfiguration"


def test_default_wait_is_aws_s() -> None:
    assert activities_api.POLL_SECONDS == 60.0
    assert activities_api.MAX_POLLERS == 1000


def test_wait_returns_on_a_wake_up_and_drains_the_rest() -> None:
    async def scenario() -> float:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, queue.put_nowait, {})
        loop.call_later(0.05, queue.put_nowait, {})
        began = loop.time()
        await long_poll.wait(queue, 5.0)
        assert queue.empty()
        return loop.time() - began

    assert asyncio.run(scenario()) < 1.0


def test_wait_without_a_transport_sleeps_the_recheck_interval() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await long_poll.wait(None, 0.1)
        return loop.time() - began

    assert 0.09 <= asyncio.run(scenario()) < 1.0


def test_notify_publishes_once_per_activity(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []

    @contextlib.asynccontextmanager
    async def listen(_settings: Any, _channel: str) -> AsyncIterator[asyncio.Queue[Any]]:
        yield asyncio.Queue()

    monkeypatch.setattr(wake, "_transport", None)
    wake.notify(None, ["a"])  # type: ignore[arg-type]  # no transport: nothing, no error
    assert wake.listener(None, "a") is None  # type: ignore[arg-type]
    wake.register(lambda _s, channel, _m: sent.append(channel), listen)
    wake.notify(None, ["a", "b", "a"])  # type: ignore[arg-type]
    assert sent == [wake.channel("a"), wake.channel("b")]
