"""What every settings section shares: its own env prefix, ``.env``, frozen values."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict


def section_config(prefix: str) -> SettingsConfigDict:
    """A section reads ``<prefix><FIELD>`` (and ``.env``), ignoring its neighbours' names."""
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore", frozen=True)
