"""``aws-sdk`` integrations deny by default: boto3 against the running app (and one worker).

Only the EC2 actions the shipped runner workflows need are allowed; ``iam:createAccessKey``,
``secretsmanager:getSecretValue`` and friends are refused by CreateStateMachine /
UpdateStateMachine / ValidateStateMachineDefinition, ``SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW``
extends the list, and a definition stored before the policy is refused when it runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.config import Settings, load_settings
from app.db import get_database, utcnow
from app.workflows import service
from app.workflows.definitions import apply_all
from tests.integration.workflows.stack import KEY_ID, KEY_SECRET, ROLE, Stack, _serve, stack
from tests.services import migrate, moto_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def task(resource: str, parameters: dict[str, Any] | None = None) -> str:
    state: dict[str, Any] = {"Type": "Task", "Resource": resource, "End": True}
    if parameters is not None:
        state["Parameters"] = parameters
    return json.dumps({"StartAt": "Call", "States": {"Call": state}})


def sfn(url: str) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=KEY_SECRET,
        config=Config(retries={"max_attempts": 0}),
    )


@pytest.fixture(scope="module")
def wf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("aws-sdk-policy")
    with pytest.MonkeyPatch.context() as patch, moto_server() as aws_env:
        for name in list(os.environ):  # the developer's settings stay out
            if name.startswith("SMOKEHOUSE_") and not name.startswith("SMOKEHOUSE_TEST_"):
                patch.delenv(name)
        patch.chdir(tmp)
        patch.setenv("SMOKEHOUSE_TEST_RECORD_DIR", str(tmp / "records"))
        with stack("embedded", tmp, aws_env, egress={}) as built:  # the default policy
            yield built


REFUSED = [
    "arn:aws:states:::aws-sdk:iam:createAccessKey",
    "arn:aws:states:::aws-sdk:secretsmanager:getSecretValue",
    "arn:aws:states:::aws-sdk:ec2:describeImages",
    "arn:aws:states:::aws-sdk:s3:getObject",
    "arn:aws:states:::aws-sdk:sts:assumeRole",
    "arn:aws:states:::aws-sdk:ssm:getParameter.waitForTaskToken",
]


@pytest.mark.parametrize("resource", REFUSED)
def test_create_state_machine_refuses_actions_not_allowed(wf: Stack, resource: str) -> None:
    action = resource.removeprefix("arn:aws:states:::aws-sdk:").removesuffix(".waitForTaskToken")
    name = "refused-" + action.replace(":", "-")
    with pytest.raises(ClientError) as caught:
        wf.client().create_state_machine(name=name, definition=task(resource), roleArn=ROLE)
    error = caught.value.response["Error"]
    assert error["Code"] == "InvalidDefinition"
    assert action in error["Message"]
    assert "SMOKEHOUSE_EGRESS_AWS_SDK_ALLOW" in error["Message"]
    names = [m["name"] for m in wf.client().list_state_machines()["stateMachines"]]
    assert name not in names  # nothing created


def test_validate_reports_the_refusal(wf: Stack) -> None:
    result = wf.client().validate_state_machine_definition(
        definition=task("arn:aws:states:::aws-sdk:iam:createAccessKey")
    )
    assert result["result"] == "FAIL"
    assert any("iam:createAccessKey" in d["message"] for d in result["diagnostics"])


def test_update_state_machine_refuses_them_too(wf: Stack) -> None:
    client = wf.client()
    arn = wf.create(
        "allowed-then-updated",
        json.loads(task("arn:aws:states:::aws-sdk:ec2:describeInstances", {})),
    )
    with pytest.raises(ClientError) as caught:
        client.update_state_machine(
            stateMachineArn=arn,
            definition=task("arn:aws:states:::aws-sdk:iam:createAccessKey", {"UserName": "x"}),
        )
    assert caught.value.response["Error"]["Code"] == "InvalidDefinition"
    assert "iam:createAccessKey" in caught.value.response["Error"]["Message"]
    definition = json.loads(client.describe_state_machine(stateMachineArn=arn)["definition"])
    assert definition["States"]["Call"]["Resource"].endswith("ec2:describeInstances")


def test_the_allowed_ec2_actions_still_run(wf: Stack) -> None:
    arn = wf.create(
        "describe-instances", json.loads(task("arn:aws:states:::aws-sdk:ec2:describeInstances", {}))
    )
    described = wf.wait(wf.start(arn, {}), 60)
    assert described["status"] == "SUCCEEDED", described


def test_a_definition_stored_before_the_policy_is_refused_when_it_runs(wf: Stack) -> None:
    """Stored with a policy that allowed it (as every definition was before); the worker runs
    with the default policy and refuses the call without making it."""
    permissive = load_settings(
        database_url=wf.settings.database_url,
        data_dir=wf.settings.data_dir,
        egress={"aws_sdk_allow": "iam:*"},
    )
    with get_database(wf.settings.sqlalchemy_url).session() as session:
        machine, _ = service.create_machine(
            session,
            permissive,
            name="stored-before",
            definition=task("arn:aws:states:::aws-sdk:iam:createAccessKey", {"UserName": "ci"}),
            role_arn=ROLE,
            now=utcnow(),
        )
        arn = machine.arn
    described = wf.wait(wf.start(arn, {}), 60)
    assert described["status"] == "FAILED"
    assert described["error"] == "States.Runtime"
    assert "iam:createAccessKey" in described["cause"]


def _serve_once(settings: Settings) -> Iterator[str]:
    yield from _serve(settings)


def test_the_setting_extends_the_list(tmp_path: Path) -> None:
    with contextmanager(_serve_once)(
        _migrated(tmp_path, aws_sdk_allow="ec2:describeImages, s3:*")
    ) as url:
        client = sfn(url)
        for resource in (
            "arn:aws:states:::aws-sdk:ec2:describeImages",
            "arn:aws:states:::aws-sdk:s3:getObject",
            "arn:aws:states:::aws-sdk:s3:putObject",
        ):
            name = "extended-" + resource.rsplit(":", 1)[-1]
            client.create_state_machine(name=name, definition=task(resource), roleArn=ROLE)
        with pytest.raises(ClientError) as caught:
            client.create_state_machine(
                name="still-refused",
                definition=task("arn:aws:states:::aws-sdk:iam:createAccessKey"),
                roleArn=ROLE,
            )
        assert caught.value.response["Error"]["Code"] == "InvalidDefinition"


def _migrated(tmp: Path, **egress: str) -> Settings:
    settings = load_settings(
        data_dir=tmp / "data",
        access_keys=f"{KEY_ID}:{KEY_SECRET}:admin",
        log_format="console",
        egress=egress,
    )
    migrate(settings.sqlalchemy_url)
    return settings


def test_the_shipped_state_machines_pass_the_default_policy(tmp_path: Path) -> None:
    settings = _migrated(tmp_path)
    report = apply_all(settings)
    assert "gitlab-start-runner" in report.created
    assert "gitlab-stop-runner" in report.created
