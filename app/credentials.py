"""Which API keys this process accepts (kept light: ``smokehouse run`` needs it before forking)."""

from __future__ import annotations

from app.auth import KeyRing, load_or_create_local_key
from app.config import ConfigError, Settings


def keyring_for(settings: Settings) -> KeyRing:
    """Configured keys; in embedded mode with none configured, the generated local admin key."""
    if settings.configured_keys:
        return KeyRing(settings.configured_keys)
    if settings.mode == "embedded":
        return KeyRing((load_or_create_local_key(settings.data_dir),))
    raise ConfigError(
        "SMOKEHOUSE_ACCESS_KEYS", "no access keys configured; set id:secret:role[,...]"
    )
