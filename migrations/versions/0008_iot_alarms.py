"""iot alarms: alarm state per probe and kind, notifications

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "iot_alarms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("probe_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("opened_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("cleared_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("silenced_until", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("open_notified_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("clear_notified_at", app.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["iot_devices.id"],
            name=op.f("fk_iot_alarms_device_id_iot_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_iot_alarms")),
    )
    op.create_index(
        "ix_iot_alarms_device_opened_at", "iot_alarms", ["device_id", "opened_at"], unique=False
    )
    op.create_index(
        "uq_iot_alarms_open",
        "iot_alarms",
        ["device_id", sa.text("coalesce(probe_id, '')"), "kind"],
        unique=True,
        postgresql_where=sa.text("cleared_at IS NULL"),
        sqlite_where=sa.text("cleared_at IS NULL"),
    )
    op.create_table(
        "iot_alarm_states",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("probe_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["iot_devices.id"],
            name=op.f("fk_iot_alarm_states_device_id_iot_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "probe_id", name=op.f("pk_iot_alarm_states")),
    )


def downgrade() -> None:
    op.drop_table("iot_alarm_states")
    op.drop_index("uq_iot_alarms_open", table_name="iot_alarms")
    op.drop_index("ix_iot_alarms_device_opened_at", table_name="iot_alarms")
    op.drop_table("iot_alarms")
