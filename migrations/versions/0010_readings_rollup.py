"""readings rollup: per-probe 10 s sums for fast downsampling, backfilled from the readings

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = "device_id, probe_id, bucket_start, n, sum_c, min_c, max_c, first_ts"
_AGGREGATES = "count(temp_c), coalesce(sum(temp_c), 0.0), min(temp_c), max(temp_c), min(ts)"
#: Existing readings summed per probe and epoch-aligned 10 s bucket (as app/iot/readings.py).
_BACKFILL = {
    "postgresql": f"INSERT INTO iot_readings_rollup ({_COLUMNS}) SELECT device_id, probe_id, "
    "date_bin('10 seconds', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b, "
    f"{_AGGREGATES} FROM iot_readings GROUP BY device_id, probe_id, b",
    "sqlite": f"INSERT INTO iot_readings_rollup ({_COLUMNS}) SELECT device_id, probe_id, "
    "strftime('%Y-%m-%d %H:%M:%S.000000', CAST(strftime('%s', ts) AS INTEGER) / 10 * 10, "
    f"'unixepoch') AS b, {_AGGREGATES} FROM iot_readings GROUP BY device_id, probe_id, b",
}


def upgrade() -> None:
    op.create_table(
        "iot_readings_rollup",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("probe_id", sa.String(length=64), nullable=False),
        sa.Column("bucket_start", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("sum_c", sa.Float(), nullable=False),
        sa.Column("min_c", sa.Float(), nullable=True),
        sa.Column("max_c", sa.Float(), nullable=True),
        sa.Column("first_ts", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "probe_id", "bucket_start"),
    )
    op.create_index(
        "ix_readings_rollup_bucket_start", "iot_readings_rollup", ["bucket_start"], unique=False
    )
    op.execute(_BACKFILL[op.get_bind().dialect.name])


def downgrade() -> None:
    op.drop_index("ix_readings_rollup_bucket_start", table_name="iot_readings_rollup")
    op.drop_table("iot_readings_rollup")
