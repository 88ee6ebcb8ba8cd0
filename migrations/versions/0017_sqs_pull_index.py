"""sqs pull index: a partial index for SQS receives, and autovacuum tuned for a queue table

A receive asks for the oldest visible pull-mode messages of one queue. With the plain
``(queue, visible_at)`` index and statistics that are stale (a burst into a fresh or idle
queue, before autovacuum's next look), PostgreSQL chose a bitmap scan of the whole queue plus
a sort: 4-8 ms per receive at 20,000 messages instead of 0.03 ms. The partial index matches the
receive's ``mode = 'pull'`` condition, so the ordered index scan wins whatever the statistics
say. The table churns like every queue table (each message is inserted, updated and deleted),
so autovacuum looks at it after 2 % of its rows changed instead of PostgreSQL's 10-20 %.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PULL = sa.text("mode = 'pull'")


def upgrade() -> None:
    op.drop_index("ix_queue_messages_queue_visible_at", table_name="queue_messages")
    op.create_index(
        "ix_queue_messages_pull_visible_at",
        "queue_messages",
        ["queue", "visible_at"],
        postgresql_where=PULL,
        sqlite_where=PULL,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE queue_messages SET (autovacuum_vacuum_scale_factor = 0.02, "
            "autovacuum_analyze_scale_factor = 0.02)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE queue_messages RESET (autovacuum_vacuum_scale_factor, "
            "autovacuum_analyze_scale_factor)"
        )
    op.drop_index("ix_queue_messages_pull_visible_at", table_name="queue_messages")
    op.create_index("ix_queue_messages_queue_visible_at", "queue_messages", ["queue", "visible_at"])
