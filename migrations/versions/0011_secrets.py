"""secrets: the encrypted secret store (runner tokens, connection credentials)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

Existing connections keep their plaintext credentials until they are next updated (read falls
back on plaintext; UpdateConnection moves them into this table): encrypting here would need the
secret key in the migrating process, which production roles other than api/worker do not hold.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=512), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", app.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secrets")),
    )
    op.create_index(op.f("ix_secrets_owner"), "secrets", ["owner"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_secrets_owner"), table_name="secrets")
    op.drop_table("secrets")
