"""One message the database refuses must not wedge ingest: it is split out of its batch, kept
with its exact bytes as a dead letter, acked with the rest; a database that is away is waited
for without acking, and ingest says it is unhealthy meanwhile.

Before: any failed batch was retried forever as a whole, nothing acked, health stayed green.
The refusal here is a PostgreSQL trigger (a constraint the operator added, a value the schema
rejects): the same for ingest as any data the database will never take.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import text

from app.db import get_database
from app.main import create_app
from tests.integration.graphql_client import data, error
from tests.integration.iot.conftest import (
    add_device,
    encode,
    publisher,
    running_ingest,
    telemetry,
    telemetry_topic,
)
from tests.integration.iot.test_ingest import batch_messages, dead_letters
from tests.keys import KEYS
from tests.services import postgres_database, wait_for

pytestmark = pytest.mark.integration

REFUSE_SEQ = """
CREATE FUNCTION refuse_seq() RETURNS trigger AS $$
BEGIN
  IF NEW.seq = 666 THEN RAISE EXCEPTION 'seq 666 is refused' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_seq BEFORE INSERT ON iot_ingested_messages
  FOR EACH ROW EXECUTE FUNCTION refuse_seq();
"""
BUSY = """
CREATE FUNCTION busy() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER busy BEFORE INSERT ON iot_ingested_messages
  FOR EACH ROW EXECUTE FUNCTION busy();
"""


def execute(url: str, sql: str) -> None:
    with get_database(url).session() as session:
        session.execute(text(sql))


def failing_seconds() -> float:
    return REGISTRY.get_sample_value("smokehouse_iot_store_failing_seconds") or 0.0


@pytest.fixture
def postgres() -> Iterator[str]:
    with postgres_database(migrated=True) as url:
        yield url


def test_a_message_the_database_refuses_is_set_aside_and_the_batch_goes_on(
    settings_factory: Any, postgres: str, mqtt_url: str
) -> None:
    settings = settings_factory(database_url=postgres, mqtt_url=mqtt_url, access_keys=KEYS)
    add_device(postgres, "bbq1")
    execute(postgres, REFUSE_SEQ)
    poison = encode(telemetry("bbq1", 666))
    with running_ingest(settings) as ingestor, publisher(mqtt_url) as client:
        client.publish_many(
            [(telemetry_topic("bbq1"), encode(telemetry("bbq1", seq))) for seq in range(1, 11)]
            + [(telemetry_topic("bbq1"), poison)]
            + [(telemetry_topic("bbq1"), encode(telemetry("bbq1", seq))) for seq in range(11, 21)]
        )
        wait_for(lambda: ingestor.stats.acked >= 21, 20, what="all 21 acked")
        assert ingestor._batcher is not None
        assert ingestor._batcher.is_alive()
    assert sorted(m["seq"] for m in batch_messages(postgres)) == list(range(1, 21))
    [letter] = dead_letters(postgres)
    assert letter.kind == "unprocessable"
    assert "seq 666 is refused" in letter.reason
    assert letter.raw == poison  # the exact bytes, for a redrive
    assert letter.device_id == "bbq1"

    # Fixed (the trigger dropped), the dead letter is redriven through GraphQL, once.
    execute(postgres, "DROP TRIGGER refuse_seq ON iot_ingested_messages")
    mutation = "mutation($id: Int!) { redriveIotDeadLetter(id: $id) { redrivenAt redrivable } }"
    with TestClient(create_app(settings)) as api:
        done = data(api, mutation, id=letter.id)["redriveIotDeadLetter"]
        assert done["redrivenAt"] is not None
        assert done["redrivable"] is False
        assert "was redriven" in error(api, mutation, id=letter.id)
    assert sorted(m["seq"] for m in batch_messages(postgres)) == [*range(1, 21), 666]


def test_a_database_that_is_away_is_waited_for_without_acking(
    settings_factory: Any, postgres: str, mqtt_url: str
) -> None:
    settings = settings_factory(database_url=postgres, mqtt_url=mqtt_url)
    add_device(postgres, "bbq1")
    execute(postgres, BUSY)
    with running_ingest(settings) as ingestor, publisher(mqtt_url) as client:
        client.publish_many(
            [(telemetry_topic("bbq1"), encode(telemetry("bbq1", seq))) for seq in range(1, 6)]
        )
        wait_for(lambda: failing_seconds() > 1.0, 15, what="ingest to report failing writes")
        assert ingestor.stats.acked == 0  # transient: nothing acked, nothing set aside
        assert dead_letters(postgres) == []
        execute(postgres, "DROP TRIGGER busy ON iot_ingested_messages")
        wait_for(lambda: ingestor.stats.acked >= 5, 30, what="the backlog after recovery")
    assert failing_seconds() == 0.0
    assert sorted(m["seq"] for m in batch_messages(postgres)) == [1, 2, 3, 4, 5]
    assert dead_letters(postgres) == []
