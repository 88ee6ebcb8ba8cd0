"""Garbage MQTT payloads never crash ingest and store nothing.

Against a private Mosquitto and an in-process ingest (tests/integration/iot/conftest.py's
fixtures), on SQLite and PostgreSQL, with unknown devices *accepted* (the loosest setting: garbage
must not create devices either): hypothesis publishes random bytes, invalid UTF-8, NUL bytes
(raw, and escaped inside JSON strings), huge and deeply nested JSON, telemetry with a member of
the wrong type or out of range, on valid telemetry and status topics and on topics that only look
like them. Then one valid reading is sent.

Asserted: ingest is still alive and processing (its batching thread is up, every message was
acknowledged, and the valid reading after the garbage reached the bus); nothing of the garbage
was stored (no bus event, no device, no reading, no dedupe row -- only dead letters, which are
the record of the refusals).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub
from sqlalchemy import func, select

from app.config import Settings
from app.db import get_database
from app.iot.models import Device, IngestedMessage, Reading
from tests.integration.iot.conftest import (
    add_device,
    encode,
    iot_overrides,
    publisher,
    running_ingest,
    telemetry,
    telemetry_topic,
)
from tests.security.fuzz_support import EXAMPLES, FUZZ_SETTINGS, Tally
from tests.services import mosquitto, wait_for

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

#: Each example is one cheap publish: ten times the examples of a request-level fuzz test.
MQTT_EXAMPLES = EXAMPLES * 10
SUBSCRIBED = ("smokehouse/+/telemetry", "smokehouse/+/status")
KNOWN = "bbq1"

#: Device ids as a garbage payload or topic might carry them.
_IDS = st.sampled_from([KNOWN, "fzdev", "", "a" * 65, "bb\x00q1", "bbq1/x", "#", "+", "ümlaut"])
_TOPICS = st.one_of(
    _IDS.map(telemetry_topic),
    _IDS.map(lambda device: f"smokehouse/{device}/status"),
    st.sampled_from(
        [
            "smokehouse//telemetry",
            "smokehouse/bbq1/telemetry/extra",
            "smokehouse/bbq1/Telemetry",
            "smokehouse/bbq1",
            "other/bbq1/telemetry",
        ]
    ),
)


def _json_any() -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=10,
    )


#: Telemetry with one member made wrong: each of these must be refused.
_BROKEN_MEMBERS: dict[str, st.SearchStrategy[Any]] = {
    "device_id": st.integers()
    | st.none()
    | st.just("bb\x00q1")
    | st.text(max_size=3).map(lambda t: t + "\x00"),
    "seq": st.text(max_size=5)
    | st.booleans()
    | st.floats(allow_nan=False).filter(lambda f: not f.is_integer())
    | st.integers(max_value=-1)
    | st.integers(min_value=2**63),
    "ts": st.integers()
    | st.just("2026-13-45T99:99:99Z")
    | st.just("9999-12-31T23:59:59Z")
    | st.text(max_size=25).map(lambda t: "2026-01-01T00:00:00" + t + "\x00"),
    "probes": st.integers()
    | st.text(max_size=5)
    | st.just([{}] * 33)
    | st.lists(
        st.fixed_dictionaries(
            {
                "id": st.just("p\x00") | st.integers() | st.just(""),
                "temp_c": st.text(max_size=3)
                | st.floats(min_value=1e4)
                | st.floats(max_value=-1e4),
                "status": st.just("ok\x00") | st.integers() | st.just("melted"),
            }
        ),
        min_size=1,
        max_size=3,
    ),
}


@st.composite
def _broken_telemetry(draw: st.DrawFn) -> tuple[str, bytes]:
    member = draw(st.sampled_from(sorted(_BROKEN_MEMBERS)))
    message = telemetry(KNOWN, draw(st.integers(1_000, 2_000)))
    message[member] = draw(_BROKEN_MEMBERS[member])
    return f"wrong-{member}", json.dumps(message).encode()


_GARBAGE: st.SearchStrategy[tuple[str, bytes]] = st.one_of(
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
    st.sampled_from([b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80", b'{"a": "\xff"}']).map(
        lambda b: ("invalid-utf8", b)
    ),
    st.sampled_from([b"\x00", b"\x00" * 1000, b'{"device_id": "bbq1\x00"}', b'"\\u0000"']).map(
        lambda b: ("nul", b)
    ),
    st.sampled_from(
        [
            # (all below Mosquitto's max_packet_size of 256 KiB, which would drop the publisher)
            b"[" * 100_000 + b"]" * 100_000,  # deeper than any parser's recursion limit
            b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
            b'{"device_id": "bbq1", "pad": "' + b"x" * (200 * 1024) + b'"}',  # > max payload
            json.dumps({"probes": [{"id": "p"}] * 10_000}).encode(),
        ]
    ).map(lambda b: ("huge-or-deep", b)),
    _json_any().map(lambda value: ("json-any", json.dumps(value).encode())),
    _broken_telemetry(),
    st.sampled_from([b"online\x00", b"ONLINE", b"", b"offline " * 1000, b"\xff"]).map(
        lambda b: ("status", b)
    ),
)


@pytest.fixture
def mqtt_url(tmp_path: Path) -> Iterator[str]:
    with mosquitto(tmp_path) as url:
        yield url


def _count(database_url: str, model: Any) -> int:
    with get_database(database_url).session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_garbage_payloads_never_crash_ingest_and_store_nothing(
    settings_factory: Callable[..., Settings],
    database_url: str,
    mqtt_url: str,
    request: pytest.FixtureRequest,
) -> None:
    settings = settings_factory(database_url=database_url, mqtt_url=mqtt_url)
    add_device(database_url, KNOWN)
    tally = Tally("mqtt.ingest")
    delivered = 0  # messages on a topic ingest subscribes to (each gets acked)
    loose = iot_overrides(accept_unknown_devices=True)
    with running_ingest(settings, loose) as ingestor, publisher(mqtt_url) as client:

        @FUZZ_SETTINGS.__class__(FUZZ_SETTINGS, max_examples=MQTT_EXAMPLES)
        @given(topic=_TOPICS, garbage=_GARBAGE)
        # NUL in a refused payload wedged ingest on PostgreSQL (its dead letter could not be
        # written, so the batch was retried forever): always tried, whatever the example count.
        @example(topic=telemetry_topic(KNOWN), garbage=("nul", b'{"device_id": "bbq1\x00"}'))
        def run(topic: str, garbage: tuple[str, bytes]) -> None:
            nonlocal delivered
            kind, payload = garbage
            if "\x00" in topic or "#" in topic or "+" in topic:
                topic = topic.replace("\x00", "").replace("#", "x").replace("+", "x")
            client.publish(topic, payload)
            if any(topic_matches_sub(sub, topic) for sub in SUBSCRIBED):
                delivered += 1
            tally.count(200, kind)

        try:
            run()
            wait_for(lambda: ingestor.stats.acked >= delivered, 60, what="garbage acked")
            assert ingestor._batcher is not None
            assert ingestor._batcher.is_alive()
            # Still processing: a valid reading after the garbage arrives.
            client.publish(telemetry_topic(KNOWN), encode(telemetry(KNOWN, 1)))
            wait_for(lambda: ingestor.stats.accepted >= 1, 30, what="the valid reading")
            wait_for(lambda: ingestor.stats.acked >= delivered + 1, 30, what="its ack")
            assert ingestor._batcher.is_alive()
        except BaseException:
            tally.server_errors += 1  # counted as a crash in the summary
            raise
        finally:
            tally.report(request)
        stats = ingestor.stats

    assert stats.accepted == 1, stats
    with get_database(database_url).session() as session:
        assert sorted(session.scalars(select(Device.id))) == [KNOWN]
    assert _count(database_url, IngestedMessage) == 1
    assert _count(database_url, Reading) == 0
    from tests.integration.iot.test_ingest import batch_messages

    assert [(m["device_id"], m["seq"]) for m in batch_messages(database_url)] == [(KNOWN, 1)]
