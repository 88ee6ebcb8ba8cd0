"""Separate credentials: an access key's secret signs AWS requests and logs in once; everything
else carries a short-lived session token that dies with the key. Start-up refuses weak and
placeholder secrets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.auth import AccessKey, issue_session
from app.cli import cli
from app.config import ConfigError, load_settings
from tests.keys import ADMIN, ADMIN_SECRET, KEYS, VIEWER, VIEWER_SECRET
from tests.security.frontdoor import build_client

pytestmark = pytest.mark.integration

SYSTEM = {"query": "{ system { version } }"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with build_client(tmp_path_factory.mktemp("sessions")) as test_client:
        yield test_client


def graphql(client: TestClient, headers: dict[str, str]) -> int:
    return client.post("/graphql", json=SYSTEM, headers=headers).status_code


def test_login_exchanges_the_key_for_a_token_that_carries_the_role(client: TestClient) -> None:
    answer = client.post("/auth/session", json={"key": VIEWER_SECRET})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["role"] == "viewer"
    assert body["expiresIn"] == 8 * 3600
    token = body["token"]
    assert token.startswith("shs1.")
    assert VIEWER_SECRET not in token
    assert graphql(client, {"Authorization": f"Bearer {token}"}) == 200
    assert graphql(client, {"x-api-key": token}) == 200
    with_id = client.post("/auth/session", json={"key": ADMIN_SECRET, "id": "AKADMIN"})
    assert with_id.json()["role"] == "admin"


@pytest.mark.parametrize(
    "login",
    [{"key": "not-a-key"}, {"key": ADMIN_SECRET, "id": "AKVIEW"}, {"key": ""}, {}],
)
def test_login_refuses_a_wrong_key(client: TestClient, login: dict[str, str]) -> None:
    assert client.post("/auth/session", json=login).status_code in (401, 422)


@pytest.mark.parametrize("secret", [ADMIN_SECRET, VIEWER_SECRET])
def test_a_raw_secret_is_no_bearer_credential(client: TestClient, secret: str) -> None:
    for headers in ({"x-api-key": secret}, {"Authorization": f"Bearer {secret}"}):
        assert graphql(client, headers) == 401
        assert client.get("/ui/session", headers=headers).status_code == 401
        sent = client.post("/queues/default/messages", json={"handler": "x"}, headers=headers)
        assert sent.status_code == 401


def test_expired_tampered_and_foreign_tokens_are_refused(client: TestClient) -> None:
    expired = issue_session(ADMIN, ttl_seconds=60, now=1_000_000)
    payload, mac = issue_session(VIEWER).removeprefix("shs1.").split(".")
    admin_payload = issue_session(ADMIN).removeprefix("shs1.").split(".")[0]
    forged = f"shs1.{admin_payload}.{mac}"  # the admin's claims under the viewer's MAC
    stranger = issue_session(AccessKey("AKNOBODY", "n0body-5Tq8Wc2Xz7Lm4Vb9Rk", "admin"))
    for token in (expired, forged, stranger, f"shs1.{payload}.", "shs1.", "shs1.x.y"):
        assert graphql(client, {"Authorization": f"Bearer {token}"}) == 401, token


def test_a_rotated_or_demoted_key_invalidates_its_tokens(tmp_path: Path) -> None:
    old = issue_session(ADMIN)
    rotated = f"AKADMIN:admin-rotated-8Kd3Vq6Zx1Wm4Tp9:admin,AKVIEW:{VIEWER_SECRET}:viewer"
    with build_client(tmp_path / "rotated", access_keys=rotated) as client:
        assert graphql(client, {"Authorization": f"Bearer {old}"}) == 401
    demoted = f"AKADMIN:{ADMIN_SECRET}:viewer,AKVIEW:{VIEWER_SECRET}:viewer"
    with build_client(tmp_path / "demoted", access_keys=demoted) as client:
        assert graphql(client, {"Authorization": f"Bearer {old}"}) == 401
    with build_client(tmp_path / "same") as client:  # KEYS unchanged: still valid
        assert graphql(client, {"Authorization": f"Bearer {old}"}) == 200


def test_the_session_command_prints_a_token_for_scripts(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMOKEHOUSE_ACCESS_KEYS", KEYS)
    monkeypatch.setenv("SMOKEHOUSE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["session", "--key-id", "AKVIEW", "--ttl", "600"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert VIEWER_SECRET not in token
    who = client.get("/ui/session", headers={"Authorization": f"Bearer {token}"}).json()
    assert who["role"] == "viewer"


# --- weak and placeholder secrets are refused at start -------------------------------------------


def shipped_placeholders() -> dict[str, str]:
    """The values .env.example ships for the secrets this check owns."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"#?\s*(SMOKEHOUSE_(ACCESS_KEYS|GITLAB_WEBHOOK_TOKEN))=(.+)", line)
        if match:
            found[match.group(1)] = match.group(3).strip()
    return found


def test_the_placeholders_in_env_example_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    placeholders = shipped_placeholders()
    assert placeholders  # .env.example ships some
    for variable, value in placeholders.items():
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigError) as refused:
            load_settings()
        assert str(refused.value).startswith(f"{variable}: "), refused.value
        assert "\n" not in str(refused.value)
        secret = value.split(":")[1] if variable.endswith("ACCESS_KEYS") else value
        assert secret not in str(refused.value)
        monkeypatch.delenv(variable)


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("access_keys", "AK:short-secret:admin", "SMOKEHOUSE_ACCESS_KEYS"),
        ("access_keys", f"AK:{'a' * 40}:admin", "SMOKEHOUSE_ACCESS_KEYS"),
        ("access_keys", "AK:changeme-changeme-changeme-1:admin", "SMOKEHOUSE_ACCESS_KEYS"),
        ("access_keys", "AK:password:admin", "SMOKEHOUSE_ACCESS_KEYS"),
        ("gitlab_webhook_token", "secret", "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN"),
        ("gitlab_webhook_token", f"{'k' * 30},tiny", "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN"),
        ("gitlab_webhook_token", "your-token-goes-here-123456", "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN"),
    ],
)
def test_weak_secrets_stop_the_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str, variable: str
) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("SMOKEHOUSE_")]:
        if not name.startswith("SMOKEHOUSE_TEST_"):
            monkeypatch.delenv(name)
    with pytest.raises(ConfigError) as refused:
        load_settings(**{field: value})
    message = str(refused.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert value.split(":")[1 if ":" in value else 0] not in message


@pytest.mark.parametrize(
    "value", ["short-token@project:12", f"{'q' * 30}@group:acme", "CHANGE-ME-hook-token@*"]
)
def test_weak_scoped_webhook_tokens_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Scoped tokens (``token@scope``) are held to the same rule as the global ones."""
    for name in [n for n in __import__("os").environ if n.startswith("SMOKEHOUSE_")]:
        if not name.startswith("SMOKEHOUSE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS", f"{'x7Lp2Qw9' * 4}@project:1;{value}")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith("SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS: webhook token #2 ")
    assert value.split("@")[0] not in message
