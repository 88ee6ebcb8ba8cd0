"""CI runner settings: the lifecycle (``SMOKEHOUSE_RUNNERS_*``) and GitLab (``SMOKEHOUSE_GITLAB_*``:
the API client and the webhook's shared secrets).

Webhook tokens are scoped (``SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS``)::

    <token>@<scope>[,<scope>...][;<token>@<scope>...]

where a scope is ``project:<id>``, ``project:<full/path>``, ``group:<full/path>`` (every project
whose path starts with ``<full/path>/``, subgroups included) or ``*`` (every project: a global
token, said explicitly). Entries are separated by ``;`` (or new lines); a token may hold any
character but ``;`` and white space (the scope list starts after its *last* ``@``). Paths compare
case-insensitively, as GitLab's do. The older ``SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN`` (comma-separated)
still works and means *global* tokens; the API warns about them at start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from app.config.section import section_config

RUNNERS_PREFIX = "SMOKEHOUSE_RUNNERS_"
GITLAB_PREFIX = "SMOKEHOUSE_GITLAB_"
#: EventBridge's event size quota: a bigger webhook could not be put on the bus anyway.
MAX_WEBHOOK_BYTES = 256 * 1024


class RunnersSettings(BaseSettings):
    """Runner profiles and the lifecycle's clocks."""

    model_config = section_config(RUNNERS_PREFIX)

    profiles_file: Path | None = Field(
        default=None,
        description="Runner profiles (YAML); unset: <definitions dir or data dir>/runners.yaml.",
    )
    webhook_max_bytes: int = Field(default=MAX_WEBHOOK_BYTES, ge=1024, le=MAX_WEBHOOK_BYTES)
    idle_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A runner whose job finished elsewhere (stolen) and that runs nothing is "
        "reclaimed after this long.",
    )
    launch_timeout_seconds: float = Field(
        default=900.0, gt=0, description="A runner still launching after this long has failed."
    )
    max_start_attempts: int = Field(default=3, ge=1, le=20)


class GitLabSettings(BaseSettings):
    """Where the GitLab API is and how to authenticate (``SMOKEHOUSE_GITLAB_*``)."""

    model_config = section_config(GITLAB_PREFIX)

    url: str | None = Field(default=None, description="GitLab base URL, e.g. https://gitlab.com")
    api_token: SecretStr | None = Field(default=None, description="Sent as PRIVATE-TOKEN.")
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_token: SecretStr | None = Field(
        default=None,
        description="Global X-Gitlab-Token values (any project), comma-separated; prefer the "
        "scoped SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS.",
    )
    webhook_tokens: SecretStr | None = Field(
        default=None,
        description="Scoped X-Gitlab-Token values: 'token@project:12,group:acme;token2@project:"
        "acme/api' (scopes: project:<id>, project:<path>, group:<path>, *).",
    )
    watch: str = Field(
        default="",
        description="Projects and groups whose pending jobs reconcile looks for (a lost pending "
        "webhook), as scopes: 'project:12,project:acme/api,group:acme'; projects with jobs in "
        "the last 30 days are watched anyway.",
    )
    verify_jobs: bool = Field(
        default=True,
        description="With the GitLab API configured, check a pending job (exists, pending, "
        "project matches) before launching, and a finished one before stopping its runner.",
    )

    @field_validator("watch")
    @classmethod
    def _check_watch(cls, value: str) -> str:
        if value.strip():
            parse_scope(value)
        return value

    @field_validator("webhook_tokens")
    @classmethod
    def _check_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_scoped_tokens(value.get_secret_value())  # ValueError names the entry, not it
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


_ID = re.compile(r"^[0-9]+$")
_PATH = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.][A-Za-z0-9_.\-]*)*$")


@dataclass(frozen=True, slots=True)
class TokenScope:
    """The projects one webhook token may report for."""

    everything: bool = False
    project_ids: frozenset[int] = frozenset()
    project_paths: frozenset[str] = frozenset()  # casefolded full paths
    group_paths: tuple[str, ...] = ()  # casefolded, without the trailing slash

    def allows(self, project_id: int | None, path: str | None) -> bool:
        if self.everything:
            return True
        if project_id is not None and project_id in self.project_ids:
            return True
        if path:
            folded = path.casefold()
            if folded in self.project_paths:
                return True
            return any(folded.startswith(group + "/") for group in self.group_paths)
        return False

    def describe(self) -> str:
        if self.everything:
            return "every project"
        parts = [f"project:{i}" for i in sorted(self.project_ids)]
        parts += [f"project:{p}" for p in sorted(self.project_paths)]
        parts += [f"group:{g}" for g in self.group_paths]
        return ", ".join(parts)


EVERYTHING = TokenScope(everything=True)


@dataclass(frozen=True, slots=True)
class WebhookGrant:
    """One accepted ``X-Gitlab-Token`` and its scope; ``label`` names it without the secret."""

    token: str = field(repr=False)
    scope: TokenScope
    label: str

    @property
    def is_global(self) -> bool:
        return self.scope.everything


def parse_scope(text: str) -> TokenScope:
    """``project:12,project:acme/api,group:acme`` or ``*``; ValueError says what is wrong."""
    ids: set[int] = set()
    paths: set[str] = set()
    groups: list[str] = []
    everything = False
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            everything = True
            continue
        kind, sep, value = item.partition(":")
        value = value.strip().strip("/")
        if not sep or kind not in ("project", "group") or not value:
            raise ValueError(
                f"scope {item!r} is not project:<id>, project:<path>, group:<path> or *"
            )
        if kind == "project" and _ID.match(value):
            ids.add(int(value))
        elif _ID.match(value):
            raise ValueError(
                f"scope {item!r}: Job Hooks carry no group id; name the group by its full path"
            )
        elif not _PATH.match(value):
            raise ValueError(f"scope {item!r}: {value!r} is not a GitLab path")
        elif kind == "project":
            paths.add(value.casefold())
        else:
            groups.append(value.casefold())
    if not (everything or ids or paths or groups):
        raise ValueError("a token needs at least one scope")
    if everything:
        return EVERYTHING
    return TokenScope(False, frozenset(ids), frozenset(paths), tuple(sorted(set(groups))))


def parse_scoped_tokens(text: str) -> list[WebhookGrant]:
    """``SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS``; errors name the entry by number, never its token."""
    grants: list[WebhookGrant] = []
    seen: set[str] = set()
    entries = [e.strip() for e in re.split(r"[;\n]", text)]
    for number, entry in enumerate((e for e in entries if e), start=1):
        token, sep, scopes = entry.rpartition("@")
        token = token.strip()
        if not sep or not token:
            raise ValueError(f"entry {number} is not <token>@<scope>[,<scope>...]")
        if any(c.isspace() for c in token):
            raise ValueError(f"entry {number}: a token may not contain white space")
        if token in seen:
            raise ValueError(f"entry {number}: the same token is listed twice")
        seen.add(token)
        try:
            scope = parse_scope(scopes)
        except ValueError as exc:
            raise ValueError(f"entry {number}: {exc}") from None
        grants.append(WebhookGrant(token, scope, f"scoped token {number} ({scope.describe()})"))
    return grants


def webhook_grants(gitlab: GitLabSettings) -> list[WebhookGrant]:
    """Every accepted token with its scope: the scoped list, then the global tokens."""
    grants: list[WebhookGrant] = []
    if gitlab.webhook_tokens is not None:
        grants.extend(parse_scoped_tokens(gitlab.webhook_tokens.get_secret_value()))
    if gitlab.webhook_token is not None:
        raw = gitlab.webhook_token.get_secret_value()
        tokens = [t.strip() for t in raw.split(",") if t.strip()]
        for number, token in enumerate(tokens, start=1):
            label = f"global token {number} (SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN)"
            grants.append(WebhookGrant(token, EVERYTHING, label))
    return grants
