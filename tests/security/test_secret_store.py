"""The secret store: keys (given, generated, rotated, missing), encryption at rest, references
resolved without touching their source, secrets owned and deleted with their owner, and the
redaction that backs it all up."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from app.config import ConfigError, Settings
from app.db import get_database
from app.secrets import delete_owned, put, reference, resolve, resolve_references
from app.secrets import keys as secret_keys
from app.secrets.models import Secret
from app.secrets.redact import MASK, RedactingFilter, forget_all, redact, redact_value
from app.secrets.store import SecretNotFound
from tests.keys import KEYS
from tests.services import migrated_sqlite, postgres_database

TOKEN = "glrt-abcDEF123_secret-token"


@pytest.fixture
def embedded(settings_factory: Callable[..., Settings], tmp_path: Path) -> Settings:
    return settings_factory(database_url=migrated_sqlite(tmp_path / "s.db"))


def test_a_bad_key_is_one_line_naming_the_variable(
    settings_factory: Callable[..., Settings],
) -> None:
    good = Fernet.generate_key().decode()
    for bad in ("CHANGE-ME-fernet-key", f"{good},short"):
        with pytest.raises(ConfigError) as caught:
            settings_factory(secret_key=bad)
        assert caught.value.setting == "SMOKEHOUSE_SECRET_KEY"
        assert "\n" not in str(caught.value)
        assert bad.split(",")[-1] not in str(caught.value)  # the key itself is not echoed


def test_embedded_generates_one_key_file_0600_that_concurrent_starts_agree_on(
    embedded: Settings,
) -> None:
    data_dir = embedded.data_dir / "fresh"
    with ThreadPoolExecutor(8) as pool:
        made = set(pool.map(lambda _: secret_keys.load_or_create_local_key(data_dir), range(16)))
    assert len(made) == 1
    path = data_dir / secret_keys.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(made.pop())  # a real Fernet key


def test_put_resolve_delete_with_encryption_at_rest(embedded: Settings) -> None:
    database = get_database(embedded.sqlalchemy_url)
    with database.session() as session:
        first = put(session, embedded, kind="t", owner="runner-a", value=TOKEN)
        put(session, embedded, kind="t", owner="runner-b", value="another-secret")
    assert first.startswith("secret-")
    assert (embedded.data_dir / "secret-key").exists()
    with database.session() as session:
        row = session.get(Secret, first)
        assert row is not None
        assert TOKEN.encode() not in bytes(row.ciphertext)
        assert resolve(session, embedded, first) == TOKEN
        params = {"UserData": f"token={reference(first)}", "Other": [1, "x"]}
        resolved = resolve_references(params, embedded, session)
        assert resolved == {"UserData": f"token={TOKEN}", "Other": [1, "x"]}
        assert params["UserData"] == f"token={reference(first)}"  # never written back
        assert delete_owned(session, "runner-a") == 1
    with database.session() as session:
        with pytest.raises(SecretNotFound) as caught:
            resolve(session, embedded, first)
        assert TOKEN not in str(caught.value)
        assert [s.owner for s in session.scalars(select(Secret))] == ["runner-b"]


def test_rotation_first_key_encrypts_all_decrypt(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    url = migrated_sqlite(tmp_path / "r.db")
    before = settings_factory(database_url=url, secret_key=old)
    with get_database(url).session() as session:
        kept = put(session, before, kind="t", owner="o", value="rotated-secret")
    after = settings_factory(database_url=url, secret_key=f"{new},{old}")
    with get_database(url).session() as session:
        assert resolve(session, after, kept) == "rotated-secret"
        fresh = put(session, after, kind="t", owner="o", value="rotated-secret-2")
        row = session.get(Secret, fresh)
        assert row is not None
        assert Fernet(new).decrypt(bytes(row.ciphertext)) == b"rotated-secret-2"
    alone = settings_factory(database_url=url, secret_key=Fernet.generate_key().decode())
    with get_database(url).session() as session, pytest.raises(SecretNotFound):
        resolve(session, alone, kept)  # a key that never encrypted it


def test_production_without_a_key_fails_when_a_secret_is_first_used(
    settings_factory: Callable[..., Settings],
) -> None:
    with postgres_database(migrated=True) as url:
        settings = settings_factory(database_url=url, secret_key="")  # loads: no key needed yet
        assert settings.secret_key is None
        with get_database(url).session() as session, pytest.raises(ConfigError) as caught:
            put(session, settings, kind="t", owner="o", value="needs-a-key")
        assert caught.value.setting == "SMOKEHOUSE_SECRET_KEY"
        assert "\n" not in str(caught.value)


def test_the_api_will_not_start_in_production_without_a_key(
    settings_factory: Callable[..., Settings],
) -> None:
    """The API stores connection credentials: without a key it would answer CreateConnection
    with a 500 (found by the AWS fuzzer), so it refuses to start, in one line."""
    from app.main import create_app

    with postgres_database(migrated=True) as url:
        settings = settings_factory(database_url=url, secret_key="", access_keys=KEYS)
        with pytest.raises(ConfigError) as caught:
            create_app(settings)
        assert caught.value.setting == "SMOKEHOUSE_SECRET_KEY"


def test_redaction_masks_known_secrets_and_runner_tokens(
    embedded: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    forget_all()
    assert redact(f"--token {TOKEN} ok") == f"--token {MASK} ok"
    assert redact("short glrt-x stays") == "short glrt-x stays"
    with get_database(embedded.sqlalchemy_url).session() as session:
        secret_id = put(session, embedded, kind="t", owner="o", value="p@ssw0rd-value")
    assert redact_value({"a": ["x p@ssw0rd-value y"], "b": 1}) == {"a": [f"x {MASK} y"], "b": 1}
    assert secret_id not in MASK
    logger = logging.getLogger("smokehouse.test-redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="smokehouse.test-redaction"):
        logger.info("calling with %s and %s", "p@ssw0rd-value", TOKEN)
    assert "p@ssw0rd-value" not in caplog.text
    assert TOKEN not in caplog.text
    assert caplog.text.count(MASK) == 2


def test_key_file_is_not_world_readable_even_with_a_loose_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        secret_keys.load_or_create_local_key(tmp_path / "loose")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "loose" / secret_keys.KEY_FILE).stat().st_mode)
    assert mode == 0o600


def test_aws_sdk_resolves_references_for_the_call_only_and_errors_are_masked(
    embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.workflows.asl import TaskError
    from app.workflows.resources import TaskCall
    from app.workflows.resources.aws_sdk import AwsSdkResource
    from app.workflows.store import shown, shown_text

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    forget_all()
    with get_database(embedded.sqlalchemy_url).session() as session:
        secret_id = put(session, embedded, kind="t", owner="o", value=TOKEN)
    forget_all()  # as in another process: only resolving makes it known
    # MaxCount must be an integer: botocore refuses it before any request, quoting the value.
    params = {"ImageId": "ami-12345678", "MinCount": 1, "MaxCount": reference(secret_id)}
    call = TaskCall(
        resource="arn:aws:states:::aws-sdk:ec2:runInstances",
        parameters=params,
        settings=embedded,
        execution_arn="arn:aws:states:us-east-1:000000000000:execution:m:e",
        state_machine_arn="arn:aws:states:us-east-1:000000000000:stateMachine:m",
        state_name="S",
        ref="S@1.0",
    )
    with pytest.raises(TaskError) as caught:
        AwsSdkResource().run(call)
    assert caught.value.error == "Ec2.SdkClientException"
    assert TOKEN in caught.value.cause  # what botocore said: resolved right before the call
    assert params["MaxCount"] == reference(secret_id)  # the parameters keep the reference
    # what the history writer records of it: masked
    assert TOKEN not in (shown_text(caught.value.cause) or "")
    assert TOKEN not in shown({"taskFailedEventDetails": {"cause": caught.value.cause}})

    with get_database(embedded.sqlalchemy_url).session() as session:
        delete_owned(session, "o")
    with pytest.raises(SecretNotFound, match=secret_id):  # gone with its owner: the task fails
        AwsSdkResource().run(call)
