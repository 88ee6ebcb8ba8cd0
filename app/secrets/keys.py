"""The Fernet key ring: ``SMOKEHOUSE_SECRET_KEY`` (comma-separated; the first encrypts, all
decrypt, so a key can be rotated), or in embedded mode a key generated once into
``<data_dir>/secret-key`` (0600). Production without a key fails with one line when a secret is
first stored or resolved, not at start: roles that hold no secrets need no key."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from app.config import ConfigError, Settings

VARIABLE = "SMOKEHOUSE_SECRET_KEY"
KEY_FILE = "secret-key"

_rings: dict[tuple[str, str], MultiFernet] = {}
_lock = threading.Lock()


def parse_keys(spec: str) -> MultiFernet:
    """``key1,key2``: a MultiFernet; a bad key is a ConfigError naming the variable."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ConfigError(VARIABLE, "no key given")
    try:
        return MultiFernet([Fernet(p) for p in parts])
    except ValueError:
        raise ConfigError(VARIABLE, "not a Fernet key (32 url-safe base64-encoded bytes)") from None


def load_or_create_local_key(data_dir: Path) -> str:
    """The embedded mode's key: made once into the data dir (0600, O_EXCL so processes starting
    together agree on one), then reused."""
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):  # another process created it and may still be writing
            text = path.read_text().strip()
            if text:
                return text
            threading.Event().wait(0.01)
        raise ConfigError(VARIABLE, f"{path} is empty; delete it or set {VARIABLE}") from None
    with os.fdopen(fd, "w") as handle:
        key = Fernet.generate_key().decode()
        handle.write(key + "\n")
    return key


def key_ring(settings: Settings) -> MultiFernet:
    """The settings' key ring (cached per key / data dir)."""
    given = settings.secret_key.get_secret_value() if settings.secret_key else ""
    cache_key = (given, "" if given else str(settings.data_dir.resolve()))
    ring = _rings.get(cache_key)
    if ring is not None:
        return ring
    with _lock:
        ring = _rings.get(cache_key)
        if ring is None:
            if given:
                spec = given
            elif settings.mode == "embedded":
                spec = load_or_create_local_key(settings.data_dir)
            else:
                raise ConfigError(
                    VARIABLE,
                    "is required to store or read secrets in production mode "
                    "(generate one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())')",
                )
            ring = _rings[cache_key] = parse_keys(spec)
    return ring
