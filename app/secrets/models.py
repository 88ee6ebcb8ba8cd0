"""The ``secrets`` table: one encrypted value per row, owned by what it was made for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UtcDateTime


class Secret(Base):
    __tablename__ = "secrets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # secret-<uuid hex>
    kind: Mapped[str] = mapped_column(String(64))  # gitlab-runner-token, connection-password...
    owner: Mapped[str] = mapped_column(String(512), index=True)  # e.g. the runner's name
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)  # Fernet token
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
