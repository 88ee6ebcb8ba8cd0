"""Rule definitions in YAML: parsing names the file, rule and problem; applying is idempotent,
prunes what a file stopped declaring and never touches rules made through the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from app.bus.definitions import (
    SHIPPED_RULES,
    ApplyReport,
    DefinitionError,
    apply_all,
    apply_definitions,
    definition_paths,
    load_definitions,
    parse_file,
)
from app.bus.models import EventBus, Rule
from app.bus.service import get_rule, put_rule, put_targets, set_rule_state
from app.config import ConfigError, Settings
from app.db import get_database

LOG = "arn:smokehouse:handler:log"
ECHO = "arn:smokehouse:handler:echo"


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def rule_yaml(name: str = "r1", targets: str = "", extra: str = "") -> str:
    return "rules:\n" + more(name, targets, extra)


def more(name: str, targets: str = "", extra: str = "") -> str:
    """One more rule for a file that rule_yaml started."""
    return f"  - name: {name}\n    event_pattern: {{source: [test]}}\n{extra}" + (
        f"    targets:\n{targets}" if targets else ""
    )


# --- parsing (no database) ----------------------------------------------------------------


def test_shipped_example_parses() -> None:
    [rule] = parse_file(SHIPPED_RULES / "examples.yaml")
    assert rule.name == "smokehouse-test-events"
    assert rule.state == "DISABLED"
    assert json.loads(rule.event_pattern) == {"source": ["smokehouse.test"]}
    assert rule.targets == ({"Id": "log", "Arn": LOG, "InputPath": "$.detail"},)
    assert rule.label == "definitions:app/definitions/rules/examples.yaml"


def test_snake_case_keys_become_aws_target_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yaml",
        """
rules:
  - name: r
    bus: other
    event_pattern: '{"source": ["a"]}'
    targets:
      - id: t1
        arn: arn:smokehouse:handler:echo
        input_transformer:
          input_paths_map: {device_id: $.detail.device_id}
          input_template: '{"d": <device_id>}'
        retry_policy: {maximum_retry_attempts: 3, maximum_event_age_in_seconds: 60}
        dead_letter_config: {arn: arn:aws:sqs:us-east-1:000000000000:dlq}
        http_parameters: {header_parameters: {x_custom: "1"}}
      - id: t2
        arn: arn:smokehouse:handler:echo
        input: {hello_there: {World: 1}}
      - Id: t3
        Arn: arn:smokehouse:handler:echo
        InputPath: $.detail
""",
    )
    [rule] = parse_file(path)
    assert rule.bus == "other"
    assert rule.event_pattern == '{"source": ["a"]}'  # JSON text is kept as written
    t1, t2, t3 = rule.targets
    assert t1 == {
        "Id": "t1",
        "Arn": ECHO,
        "InputTransformer": {
            "InputPathsMap": {"device_id": "$.detail.device_id"},  # user keys kept
            "InputTemplate": '{"d": <device_id>}',
        },
        "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 60},
        "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:000000000000:dlq"},
        "HttpParameters": {"HeaderParameters": {"x_custom": "1"}},
    }
    assert t2 == {"Id": "t2", "Arn": ECHO, "Input": '{"hello_there": {"World": 1}}'}
    assert t3 == {"Id": "t3", "Arn": ECHO, "InputPath": "$.detail"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (rule_yaml(extra="    state: ON\n"), "rule 'r1': state must be ENABLED or DISABLED"),
        (rule_yaml(extra="    shedule: x\n"), "rule 'r1': unknown key(s) shedule"),
        ("rules:\n  - name: r1\n", "rule 'r1': event_pattern is required"),
        (
            "rules:\n  - name: r1\n    event_pattern: {source: aws.ec2}\n",
            "rule 'r1': Event pattern is not valid. Reason: \"source\" must be an object or an "
            "array",
        ),
        ("rules:\n  - name: 'bad name'\n    event_pattern: {}\n", "rules[0]: name 'bad name'"),
        (
            rule_yaml(targets="      - id: a\n        arn: x\n        inptu_path: $\n"),
            "rule 'r1': target 'a': unknown field(s) InptuPath",
        ),
        (
            rule_yaml(targets="      - id: a\n"),
            "rule 'r1': target 'a': arn is required",
        ),
        (
            rule_yaml(targets="      - {id: a, arn: x}\n      - {id: a, arn: y}\n"),
            "rule 'r1': duplicate target id(s) a",
        ),
        (
            rule_yaml(targets="      - {id: a, arn: x, input: 'not json'}\n"),
            "rule 'r1': target 'a': input is not valid JSON text",
        ),
        (
            rule_yaml(targets="      - {id: a, arn: x, input: '{}', input_path: $}\n"),
            "rule 'r1': target 'a': give only one of input, input_path, input_transformer",
        ),
        (
            rule_yaml(targets="".join(f"      - {{id: t{i}, arn: x}}\n" for i in range(6))),
            "rule 'r1': at most 5 targets per rule",
        ),
        (rule_yaml(extra="    bus: aws.events\n"), "rule 'r1': bus name 'aws.events'"),
        ("rules: [\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping with one key, rules"),
    ],
)
def test_invalid_definitions_name_the_file_rule_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(DefinitionError) as raised:
        parse_file(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert problem in str(raised.value)


def test_a_rule_declared_in_two_files_is_rejected(tmp_path: Path) -> None:
    one = write(tmp_path, "one.yaml", rule_yaml())
    two = write(tmp_path, "two.yaml", rule_yaml())
    with pytest.raises(DefinitionError, match=f"{two}: rule 'r1': also declared in {one}"):
        load_definitions([one, two])


def test_definition_paths(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    assert definition_paths(settings_factory()) == [SHIPPED_RULES]
    mine = tmp_path / "mine"
    mine.mkdir()
    assert definition_paths(settings_factory(definitions_dir=mine)) == [SHIPPED_RULES]
    (mine / "rules").mkdir()
    assert definition_paths(settings_factory(definitions_dir=mine)) == [
        SHIPPED_RULES,
        mine / "rules",
    ]
    with pytest.raises(ConfigError, match="SMOKEHOUSE_DEFINITIONS_DIR"):
        definition_paths(settings_factory(definitions_dir=tmp_path / "missing"))


# --- applying (SQLite and PostgreSQL) -----------------------------------------------------


def revision(database_url: str, bus: str = "default") -> int:
    with get_database(database_url).session() as session:
        found = session.get(EventBus, bus)
        assert found is not None
        return found.revision


def apply(database_url: str, *paths: Path) -> ApplyReport:
    with get_database(database_url).session() as session:
        return apply_definitions(session, list(paths))


def rules(database_url: str) -> dict[str, tuple[str, str | None, list[str]]]:
    with get_database(database_url).session() as session:
        return {
            f"{r.bus_name}/{r.name}": (r.state, r.managed_by, [t.target_id for t in r.targets])
            for r in session.scalars(select(Rule))
        }


def shipped() -> list[str]:
    """The rules the project ships (the seed as data), as bus/name."""
    return [f"{d.bus}/{d.name}" for d in load_definitions(sorted(SHIPPED_RULES.glob("*.yaml")))]


@pytest.mark.integration
def test_apply_is_idempotent_and_prunes_what_a_file_no_longer_declares(
    database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "rules"
    two_targets = f"      - {{id: a, arn: '{LOG}'}}\n      - {{id: b, arn: '{ECHO}'}}\n"
    path = write(folder, "mine.yaml", rule_yaml("r1", two_targets) + more("r2"))
    other = write(folder, "other.yaml", rule_yaml("r9", extra="    bus: custom\n"))

    report = apply(database_url, SHIPPED_RULES, folder)
    assert sorted(report.created) == sorted(["custom/r9", "default/r1", "default/r2", *shipped()])
    assert report.buses_created == ["custom"]
    label = "definitions:" + path.resolve().as_posix()
    assert rules(database_url)["default/r1"] == ("ENABLED", label, ["a", "b"])
    assert rules(database_url)["default/smokehouse-test-events"][0] == "DISABLED"
    before = revision(database_url)

    again = apply(database_url, SHIPPED_RULES, folder)
    assert again.changed is False
    assert len(again.unchanged) == 3 + len(shipped())
    assert revision(database_url) == before  # nothing written, no matcher rebuilt

    # Target b and rule r2 leave the file; other.yaml is deleted from the folder.
    path.write_text(rule_yaml("r1", f"      - {{id: a, arn: '{LOG}', input_path: $.detail}}\n"))
    other.unlink()
    report = apply(database_url, SHIPPED_RULES, folder)
    assert report.updated == ["default/r1"]
    assert sorted(report.deleted) == ["custom/r9", "default/r2"]
    assert rules(database_url)["default/r1"][2] == ["a"]
    with get_database(database_url).session() as session:
        [target] = get_rule(session, "default", "r1").targets
        assert target.spec == {"Id": "a", "Arn": LOG, "InputPath": "$.detail"}
    assert revision(database_url) > before


@pytest.mark.integration
def test_api_rules_are_never_touched_and_bad_input_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    with get_database(database_url).session() as session:
        put_rule(session, name="from-api", event_pattern={"source": ["x"]})
        put_targets(session, None, "from-api", [{"Id": "t", "Arn": ECHO}])
    good = write(tmp_path / "rules", "good.yaml", rule_yaml("declared"))
    apply(database_url, good)
    before = rules(database_url)
    assert before["default/from-api"] == ("ENABLED", None, ["t"])

    claims_api_rule = write(tmp_path, "claims.yaml", rule_yaml("from-api"))
    with pytest.raises(DefinitionError, match="created through the API"):
        apply(database_url, claims_api_rule)

    unknown_handler = "      - {id: a, arn: 'arn:smokehouse:handler:nope'}\n"
    good.write_text(rule_yaml("declared") + more("second"))
    bad = write(tmp_path / "rules", "zz-bad.yaml", rule_yaml("third", unknown_handler))
    with pytest.raises(DefinitionError) as raised:
        apply(database_url, tmp_path / "rules")
    assert str(raised.value) == (
        f"{bad}: rule 'third': target 'a': No handler named 'nope' is registered."
    )
    assert rules(database_url) == before  # the valid file was not applied either

    bad.unlink()
    good.unlink()
    report = apply(database_url, tmp_path / "rules")  # an emptied folder prunes its rules
    assert report.deleted == ["default/declared"]
    assert set(rules(database_url)) == {"default/from-api"}


@pytest.mark.integration
def test_state_in_a_file_wins_and_a_missing_state_leaves_runtime_changes_alone(
    database_url: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path, "s.yaml", rule_yaml("free") + more("pinned", extra="    state: ENABLED\n")
    )
    apply(database_url, path)
    with get_database(database_url).session() as session:
        set_rule_state(session, "default", "free", "DISABLED")
        set_rule_state(session, "default", "pinned", "DISABLED")
    report = apply(database_url, path)
    assert report.updated == ["default/pinned"]
    assert report.unchanged == ["default/free"]
    assert rules(database_url)["default/free"][0] == "DISABLED"
    assert rules(database_url)["default/pinned"][0] == "ENABLED"


@pytest.mark.integration
def test_apply_all_uses_the_settings(
    settings_factory: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    write(mine / "rules", "a.yaml", rule_yaml("users-rule"))
    settings = settings_factory(database_url=database_url, definitions_dir=mine)
    report = apply_all(settings)
    assert sorted(report.created) == sorted(["default/users-rule", *shipped()])
    assert apply_all(settings).changed is False
