"""event bus

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("authorization_type", sa.String(length=32), nullable=False),
        sa.Column("auth_parameters", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_modified_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_connections")),
    )
    op.create_table(
        "event_buses",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_event_buses")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("bus_name", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("detail_type", sa.String(length=256), nullable=False),
        sa.Column("time", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=False),
        sa.Column("replay_name", sa.String(length=64), nullable=True),
        sa.Column("matched_rules", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_bus_time", ["bus_name", "time"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_received_at"), ["received_at"], unique=False)

    op.create_table(
        "replays",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("archive_name", sa.String(length=48), nullable=False),
        sa.Column("destination_bus", sa.String(length=256), nullable=False),
        sa.Column("filter_rules", sa.JSON(), nullable=True),
        sa.Column("event_start_time", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("event_end_time", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("state_reason", sa.String(length=512), nullable=True),
        sa.Column("replay_start_time", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("replay_end_time", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_replayed_time", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_replays")),
    )
    op.create_table(
        "api_destinations",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("connection_name", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=2048), nullable=False),
        sa.Column("http_method", sa.String(length=8), nullable=False),
        sa.Column("invocation_rate_limit_per_second", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_modified_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_name"],
            ["connections.name"],
            name=op.f("fk_api_destinations_connection_name_connections"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_api_destinations")),
    )
    op.create_table(
        "archives",
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("bus_name", sa.String(length=256), nullable=False),
        sa.Column("event_pattern", sa.Text(), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bus_name"],
            ["event_buses.name"],
            name=op.f("fk_archives_bus_name_event_buses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_archives")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("bus_name", sa.String(length=256), nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("rule_name", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("target_arn", sa.String(length=1600), nullable=False),
        sa.Column("target_spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_deliveries_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "event_id",
            "rule_id",
            "target_id",
            name=op.f("uq_deliveries_event_id_rule_id_target_id"),
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_rule_id"), ["rule_id"], unique=False)

    op.bulk_insert(
        sa.table(
            "event_buses",
            sa.column("name", sa.String),
            sa.column("description", sa.String),
            sa.column("created_at", app.db.UtcDateTime()),
            sa.column("revision", sa.Integer),
        ),
        [
            {
                "name": "default",
                "description": "The default event bus",
                "created_at": datetime.now(UTC),
                "revision": 0,
            }
        ],
    )
    op.create_table(
        "rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("bus_name", sa.String(length=256), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("event_pattern", sa.Text(), nullable=True),
        sa.Column("schedule_expression", sa.String(length=256), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("role_arn", sa.String(length=1600), nullable=True),
        sa.Column("managed_by", sa.String(length=256), nullable=True),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bus_name"],
            ["event_buses.name"],
            name=op.f("fk_rules_bus_name_event_buses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules")),
        sa.UniqueConstraint("bus_name", "name", name=op.f("uq_rules_bus_name_name")),
    )
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rules_bus_name"), ["bus_name"], unique=False)

    op.create_table(
        "archived_events",
        sa.Column("archive_name", sa.String(length=48), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("time", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["archive_name"],
            ["archives.name"],
            name=op.f("fk_archived_events_archive_name_archives"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_archived_events_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("archive_name", "event_id", name=op.f("pk_archived_events")),
    )
    with op.batch_alter_table("archived_events", schema=None) as batch_op:
        batch_op.create_index("ix_archived_events_window", ["archive_name", "time"], unique=False)

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("bus_name", sa.String(length=256), nullable=False),
        sa.Column("rule_name", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("redriven_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_dead_letters_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letters_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_dead_letters_delivery_id"), ["delivery_id"], unique=False
        )

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_delivery_id"), ["delivery_id"], unique=False
        )

    op.create_table(
        "targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("arn", sa.String(length=1600), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["rules.id"], name=op.f("fk_targets_rule_id_rules"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_targets")),
        sa.UniqueConstraint("rule_id", "target_id", name=op.f("uq_targets_rule_id_target_id")),
    )
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_targets_rule_id"), ["rule_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_targets_rule_id"))

    op.drop_table("targets")
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_delivery_id"))

    op.drop_table("delivery_attempts")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_delivery_id"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_created_at"))

    op.drop_table("dead_letters")
    with op.batch_alter_table("archived_events", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_events_window")

    op.drop_table("archived_events")
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rules_bus_name"))

    op.drop_table("rules")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_rule_id"))
        batch_op.drop_index(batch_op.f("ix_deliveries_event_id"))
        batch_op.drop_index("ix_deliveries_due")

    op.drop_table("deliveries")
    op.drop_table("archives")
    op.drop_table("api_destinations")
    op.drop_table("replays")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_received_at"))
        batch_op.drop_index("ix_events_bus_time")

    op.drop_table("events")
    op.drop_table("event_buses")
    op.drop_table("connections")
