"""The server's secret store: secrets (runner tokens, connection credentials) kept encrypted at
rest with Fernet, referred to by id everywhere else, resolved only by the step that needs them.

- :mod:`app.secrets.keys` -- the key ring (``SMOKEHOUSE_SECRET_KEY``, or a generated
  ``<data_dir>/secret-key`` in embedded mode);
- :mod:`app.secrets.store` -- put/resolve/delete inside the caller's unit of work;
- :mod:`app.secrets.references` -- ``{{resolve:smokehouse:<id>}}`` dynamic references;
- :mod:`app.secrets.redact` -- the second line of defence: known secret strings become ``****``.
"""

from app.secrets.redact import redact, redact_value
from app.secrets.references import reference, resolve_references
from app.secrets.store import delete, delete_owned, put, resolve

__all__ = [
    "delete",
    "delete_owned",
    "put",
    "redact",
    "redact_value",
    "reference",
    "resolve",
    "resolve_references",
]
