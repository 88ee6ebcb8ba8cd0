"""Runner profiles: validation names the file and field, GitLab's tag rule picks the profile,
user data is rendered shell-quoted, and RunInstances parameters carry what EC2 needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import ConfigError
from app.runners.profiles import (
    Ec2Profile,
    LaunchOption,
    Profiles,
    client_token,
    launch_options,
    load_profiles,
    parse_profiles,
    render_user_data,
    run_instances_params,
    with_option,
)

EC2 = {"kind": "ec2", "image_id": "ami-1", "instance_types": ["t3.small"]}


def profiles(**named: dict[str, Any]) -> Profiles:
    return parse_profiles({"profiles": named}, "test.yaml")


def test_job_tags_must_all_be_on_the_profile_and_the_closest_wins() -> None:
    config = profiles(
        small={**EC2, "tags": ["aws"]},
        big={**EC2, "tags": ["aws", "big"]},
        docker={"kind": "container", "image": "runner:1", "tags": ["docker", "aws"]},
    )
    assert config.select(["aws"]) == "small"  # fewest extra tags
    assert config.select(["aws", "big"]) == "big"
    assert config.select(["docker"]) == "docker"
    assert config.select(["gpu"]) is None  # a job for someone else's runner: not ours
    assert config.select(["aws", "gpu"]) is None


def test_untagged_jobs_go_to_the_default_or_a_run_untagged_profile() -> None:
    config = parse_profiles({"default": "big", "profiles": {"small": EC2, "big": EC2}}, "test.yaml")
    assert config.select([]) == "big"
    assert profiles(a=EC2, b={**EC2, "run_untagged": True}).select([]) == "b"
    assert profiles(a=EC2).select([]) is None


def test_equal_matches_go_to_the_first_declared() -> None:
    assert profiles(one={**EC2, "tags": ["x"]}, two={**EC2, "tags": ["x"]}).select(["x"]) == "one"


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4))
def test_a_selected_profile_always_has_every_job_tag(tags: list[str]) -> None:
    config = profiles(
        ab={**EC2, "tags": ["a", "b"]},
        abc={**EC2, "tags": ["a", "b", "c"]},
        d={**EC2, "tags": ["d"]},
    )
    chosen = config.select(tags)
    if chosen is not None:
        assert set(tags) <= set(config.profiles[chosen].tags)
    else:
        assert not any(set(tags) <= set(p.tags) for p in config.profiles.values()) or not tags


def test_fallback_map_by_project_and_job_name_globs() -> None:
    config = parse_profiles(
        {
            "job_tags": [
                {"project_id": 7, "job_name": "build:*", "tags": ["docker"]},
                {"project": "group/*", "tags": ["aws"]},
            ]
        },
        "f.yaml",
    )
    assert config.fallback_tags(7, "other/p", "build:linux") == ["docker"]
    assert config.fallback_tags(8, "group/app", "build:linux") == ["aws"]
    assert config.fallback_tags(8, "solo/app", "test") == []


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"profiles": {"x": {"kind": "ec2", "instance_types": ["t3.small"]}}}, "image_id"),
        ({"profiles": {"x": {**EC2, "instance_types": []}}}, "instance_types"),
        ({"profiles": {"x": {**EC2, "user_data": "echo ${nope}"}}}, "nope"),
        ({"profiles": {"x": {"kind": "vm"}}}, "profiles.x"),
        ({"profiles": {"x": {**EC2, "colour": "red"}}}, "colour"),
        ({"default": "missing", "profiles": {"x": EC2}}, "default names no profile"),
        ({"profiles": {"x": {"kind": "container", "image": "i", "memory": "lots"}}}, "memory"),
        ({"profiles": {"x": {**EC2, "launch_template": {"version": "1"}}}}, "exactly one"),
    ],
)
def test_bad_profiles_are_one_config_error_naming_file_and_field(
    data: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_profiles(data, "/etc/runners.yaml")
    assert raised.value.setting == "SMOKEHOUSE_RUNNERS_PROFILES_FILE"
    assert "/etc/runners.yaml" in str(raised.value)
    assert problem in str(raised.value)


def test_load_profiles_from_a_file(tmp_path: Path) -> None:
    assert load_profiles(tmp_path / "absent.yaml").profiles == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml: cannot read"):
        load_profiles(bad)
    good = tmp_path / "good.yaml"
    good.write_text(
        "default: a\nprofiles:\n  a: {kind: ec2, image_id: ami-1, instance_types: [t3.micro]}\n"
    )
    assert load_profiles(good).select([]) == "a"


def test_the_shipped_example_is_valid() -> None:
    example = Path(__file__).resolve().parents[3] / "app/definitions/runners.example.yaml"
    config = load_profiles(example)
    assert config.default in config.profiles
    assert {p.kind for p in config.profiles.values()} == {"ec2", "container"}


VALUES = {
    "gitlab_url": "https://gitlab.example.com",
    "runner_token": "glrt-abc'; rm -rf /",
    "runner_name": "smokehouse-1-abcdef",
    "job_id": 1,
    "project_id": 2,
    "profile": "small",
    "tags": "aws",
    "max_lifetime_minutes": 60,
    "idle_timeout_seconds": 600,
    "max_builds": 1,
}


def test_default_user_data_runs_one_job_then_powers_off() -> None:
    profile = Ec2Profile.model_validate(EC2)
    script = render_user_data(profile, VALUES)
    assert script.startswith("#!/bin/bash")
    assert "--max-builds 1" in script
    assert "shutdown -h +60" in script
    assert script.rstrip().endswith("shutdown -h now")
    # values are shell-quoted: a hostile token cannot break out of its argument
    assert "'glrt-abc'\"'\"'; rm -rf /'" in script


def test_custom_user_data_and_missing_values() -> None:
    profile = Ec2Profile.model_validate({**EC2, "user_data": "run ${job_id} ${runner_name}"})
    assert render_user_data(profile, VALUES) == "run 1 smokehouse-1-abcdef"
    with pytest.raises(ValueError, match="runner_name"):
        render_user_data(profile, {"job_id": 1})


def test_launch_options_try_spot_then_on_demand_per_type() -> None:
    profile = Ec2Profile.model_validate({**EC2, "instance_types": ["a", "b"], "spot": True})
    assert launch_options(profile) == [
        LaunchOption("a", "spot"),
        LaunchOption("a", "on-demand"),
        LaunchOption("b", "spot"),
        LaunchOption("b", "on-demand"),
    ]
    plain = Ec2Profile.model_validate({**EC2, "instance_types": ["a", "b"]})
    assert [o.market for o in launch_options(plain)] == ["on-demand", "on-demand"]


def test_launch_options_move_across_subnets_before_market_and_type() -> None:
    profile = Ec2Profile.model_validate(
        {**EC2, "instance_types": ["a", "b"], "spot": True, "subnet_ids": ["s-1", "s-2"]}
    )
    assert [(o.instance_type, o.market, o.subnet_id) for o in launch_options(profile)] == [
        ("a", "spot", "s-1"),
        ("a", "spot", "s-2"),
        ("a", "on-demand", "s-1"),
        ("a", "on-demand", "s-2"),
        ("b", "spot", "s-1"),
        ("b", "spot", "s-2"),
        ("b", "on-demand", "s-1"),
        ("b", "on-demand", "s-2"),
    ]
    # a spot interruption's retry never asks for spot
    assert {o.market for o in launch_options(profile, on_demand_only=True)} == {"on-demand"}
    single = Ec2Profile.model_validate({**EC2, "subnet_id": "s-9"})
    assert [o.subnet_id for o in launch_options(single)] == ["s-9"]
    with pytest.raises(ValueError, match="subnet_id or subnet_ids"):
        Ec2Profile.model_validate({**EC2, "subnet_id": "s-9", "subnet_ids": ["s-1"]})


def test_each_option_sets_its_own_subnet_market_and_token() -> None:
    profile = Ec2Profile.model_validate({**EC2, "spot": True, "subnet_ids": ["s-1", "s-2"]})
    first, second, *_ = launch_options(profile)
    params = run_instances_params(profile, first, token="t1", user_data="", tags={})
    assert (params["SubnetId"], params["InstanceMarketOptions"]["MarketType"]) == ("s-1", "spot")
    moved = with_option(params, launch_options(profile)[2], "t3")
    assert moved["SubnetId"] == "s-1"
    assert "InstanceMarketOptions" not in moved
    assert moved["ClientToken"] == "t3"
    assert client_token("r", 1, first) != client_token("r", 1, second)  # per subnet


def test_pool_settings_follow_fleeting() -> None:
    config = profiles(
        warm={
            **EC2,
            "max_concurrent": 8,
            "pool": {
                "idle_count": 2,
                "idle_time": "20m",
                "max_use": 5,
                "schedule": [
                    {
                        "periods": ["* 8-18 * * mon-fri"],
                        "timezone": "Europe/Berlin",
                        "idle_count": 6,
                        "idle_time": "1h30m",
                    }
                ],
            },
        }
    )
    pool = config.profiles["warm"].pool
    assert pool is not None
    assert (pool.idle_count, pool.idle_time, pool.max_use) == (2, 1200, 5)
    assert pool.schedule[0].idle_time == 5400
    for bad, why in (
        ({"idle_count": 9}, "above max_concurrent"),
        ({"schedule": [{"periods": ["* * *"], "idle_count": 1}]}, "5 fields"),
        ({"schedule": [{"periods": ["* 25 * * *"], "idle_count": 1}]}, "not a cron"),
        (
            {"schedule": [{"periods": ["* * * * *"], "timezone": "Mars/Base", "idle_count": 1}]},
            "unknown time zone",
        ),
        ({"idle_time": "soon"}, "duration"),
        ({"max_use": 0}, "greater than or equal to 1"),
    ):
        with pytest.raises(ConfigError, match=why):
            profiles(warm={**EC2, "max_concurrent": 8, "pool": bad})
    with pytest.raises(ConfigError, match="no one project"):
        profiles(warm={**EC2, "runner_type": "project_type", "pool": {"idle_count": 1}})


def test_prices_per_type_and_market() -> None:
    profile = Ec2Profile.model_validate(
        {
            **EC2,
            "prices": {
                "t3.small": {"on_demand": 0.02, "spot": 0.007},
                "c5.large": {"on_demand": 0.1},
            },
        }
    )
    assert profile.hourly_price("t3.small", "spot") == 0.007
    assert profile.hourly_price("t3.small", "on-demand") == 0.02
    assert profile.hourly_price("c5.large", "spot") == 0.1  # no spot price: on-demand's
    assert profile.hourly_price("m5.large", "on-demand") is None


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=120),
    st.integers(1, 20),
    st.sampled_from(["t3.small", "c5.24xlarge", "m7g.metal-48xl"]),
    st.sampled_from(["spot", "on-demand"]),
)
def test_client_token_fits_and_differs_per_type_and_market(
    name: str, attempt: int, instance_type: str, market: str
) -> None:
    option = LaunchOption(instance_type, market)  # type: ignore[arg-type]
    token = client_token(name, attempt, option)
    assert 1 <= len(token) <= 64
    assert token.endswith(f"{instance_type}-{market}")
    other = LaunchOption("t4g.nano", "spot" if market == "on-demand" else "on-demand")
    assert client_token(name, attempt, other) != token


def test_run_instances_params() -> None:
    profile = Ec2Profile.model_validate(
        {
            "kind": "ec2",
            "launch_template": {"name": "ci", "version": "3"},
            "instance_types": ["t3.small"],
            "subnet_id": "subnet-1",
            "security_group_ids": ["sg-1"],
            "iam_instance_profile": "arn:aws:iam::1:instance-profile/ci",
            "key_name": "ops",
        }
    )
    params = run_instances_params(
        profile, LaunchOption("t3.small", "spot"), token="tok", user_data="#!", tags={"a": "b"}
    )
    assert params["LaunchTemplate"] == {"LaunchTemplateName": "ci", "Version": "3"}
    assert "ImageId" not in params
    assert params["IamInstanceProfile"] == {"Arn": "arn:aws:iam::1:instance-profile/ci"}
    assert params["InstanceMarketOptions"]["MarketType"] == "spot"
    assert params["InstanceInitiatedShutdownBehavior"] == "terminate"  # power off = gone
    assert params["TagSpecifications"] == [
        {"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b"}]}
    ]
    assert (params["MinCount"], params["MaxCount"], params["ClientToken"]) == (1, 1, "tok")
    named = Ec2Profile.model_validate({**EC2, "iam_instance_profile": "ci"})
    on_demand = run_instances_params(
        named, LaunchOption("t3.small", "on-demand"), token="t", user_data="", tags={}
    )
    assert on_demand["IamInstanceProfile"] == {"Name": "ci"}
    assert "InstanceMarketOptions" not in on_demand


def test_container_volumes() -> None:
    config = profiles(
        box={"kind": "container", "image": "i", "volumes": ["/usr:/usr:ro", "/cache:/cache"]}
    )
    box = config.profiles["box"]
    assert box.kind == "container"
    assert box.mounts() == {  # type: ignore[union-attr]
        "/usr": {"bind": "/usr", "mode": "ro"},
        "/cache": {"bind": "/cache", "mode": "rw"},
    }
    with pytest.raises(ConfigError, match="volume"):
        profiles(box={"kind": "container", "image": "i", "volumes": ["/usr"]})
