"""Import every domain's models so Alembic and tests see the whole schema."""

from app.system.models import Ping

__all__ = ["Ping"]
