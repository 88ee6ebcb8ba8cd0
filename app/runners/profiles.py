"""Runner profiles: which job tags get which kind of runner, and how it is launched. Pure.

A YAML file (``SMOKEHOUSE_RUNNERS_PROFILES_FILE``; see ``app/definitions/runners.example.yaml``)
is validated with pydantic; a bad file is one :class:`~app.config.ConfigError` naming the file
and the field. Matching follows GitLab's rule: a runner takes a job when the runner has *every*
tag of the job; among the profiles that can, the one with the fewest extra tags wins (then the
first declared). Untagged jobs go to ``default``.
"""

from __future__ import annotations

import fnmatch
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from app.config import ConfigError
from app.runners.pool_policy import Policy, parse_duration, parse_period, zone

SETTING = "SMOKEHOUSE_RUNNERS_PROFILES_FILE"
RunnerType = Literal["instance_type", "group_type", "project_type"]

#: Variables a user-data template may use, each substituted shell-quoted.
USER_DATA_VARIABLES = frozenset(
    {
        "gitlab_url",
        "runner_token",
        "runner_name",
        "job_id",
        "project_id",
        "profile",
        "tags",
        "max_lifetime_minutes",
        "idle_timeout_seconds",
        "max_builds",
    }
)
DEFAULT_USER_DATA = """#!/bin/bash
# smokehouse: an ephemeral GitLab runner (profile ${profile}; job ${job_id}, empty for a
# warm-pool runner). It takes ${max_builds} job(s), then powers off; the instance terminates on
# shutdown.
set -u
shutdown -h +${max_lifetime_minutes} || true   # never outlive the profile's max lifetime
gitlab-runner run-single \\
  --url ${gitlab_url} --token ${runner_token} --name ${runner_name} \\
  --executor shell --max-builds ${max_builds} --wait-timeout ${idle_timeout_seconds}
shutdown -h now
"""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LaunchTemplate(_Strict):
    id: str | None = None
    name: str | None = None
    version: str = "$Default"

    @model_validator(mode="after")
    def _one_of(self) -> LaunchTemplate:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of id or name")
        return self


Duration = Annotated[int, BeforeValidator(parse_duration)]


class PoolPolicy(_Strict):
    """During ``periods`` (five-field cron, in ``timezone``) keep ``idle_count`` idle runners."""

    periods: list[str] = Field(min_length=1)
    timezone: str = "UTC"
    idle_count: int = Field(ge=0, le=1000)
    idle_time: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> PoolPolicy:
        for period in self.periods:
            parse_period(period)
        zone(self.timezone)
        return self

    def policy(self) -> Policy:
        return Policy(
            tuple(parse_period(p) for p in self.periods),
            self.timezone,
            self.idle_count,
            self.idle_time,
        )


class Pool(_Strict):
    """A warm pool, as fleeting's: ``idle_count`` runners launched and registered ahead of any
    job, surplus ones stopped after ``idle_time``; ``max_use`` jobs per runner (default 1: each
    still takes one job); ``schedule`` entries change both by time of day (last match wins)."""

    idle_count: int = Field(default=0, ge=0, le=1000)
    idle_time: Duration = 600
    max_use: int = Field(default=1, ge=1, le=10_000)
    schedule: list[PoolPolicy] = Field(default_factory=list)

    def policies(self) -> list[Policy]:
        return [entry.policy() for entry in self.schedule]


class _Profile(_Strict):
    tags: list[str] = Field(default_factory=list)
    run_untagged: bool = False
    max_concurrent: int = Field(default=10, ge=1, le=10_000)
    runner_type: RunnerType = "instance_type"
    group_id: int | None = None
    pool: Pool | None = None

    @model_validator(mode="after")
    def _check_pool(self) -> _Profile:
        if self.pool is None:
            return self
        if self.runner_type == "project_type":
            raise ValueError(
                "a pool's runners serve no one project: use instance_type or group_type"
            )
        most = max([self.pool.idle_count, *(p.idle_count for p in self.pool.schedule)])
        if most > self.max_concurrent:
            raise ValueError(
                f"pool idle_count {most} is above max_concurrent {self.max_concurrent}"
            )
        return self


class Price(_Strict):
    """Hourly prices of one instance type (any currency; the dashboard shows the number)."""

    on_demand: float = Field(ge=0)
    spot: float | None = Field(default=None, ge=0)


class Ec2Profile(_Profile):
    kind: Literal["ec2"]
    image_id: str | None = None
    launch_template: LaunchTemplate | None = None
    instance_types: list[str] = Field(min_length=1)
    subnet_id: str | None = None
    subnet_ids: list[str] = Field(
        default_factory=list, description="Tried in order (availability zones) on capacity errors."
    )
    security_group_ids: list[str] = Field(default_factory=list)
    iam_instance_profile: str | None = Field(default=None, description="A name or an ARN.")
    key_name: str | None = None
    spot: bool = Field(default=False, description="Spot first, on-demand when spot fails.")
    user_data: str = DEFAULT_USER_DATA
    max_lifetime_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    idle_timeout_minutes: int = Field(default=10, ge=1, le=24 * 60)
    prices: dict[str, Price] = Field(default_factory=dict, description="Per instance type.")

    @model_validator(mode="after")
    def _check(self) -> Ec2Profile:
        if self.image_id is None and self.launch_template is None:
            raise ValueError("give image_id or launch_template")
        if self.subnet_id is not None and self.subnet_ids:
            raise ValueError("give subnet_id or subnet_ids, not both")
        return self

    def hourly_price(self, instance_type: str | None, market: str | None) -> float | None:
        """The price table's figure for a runner (spot falls back to on-demand's)."""
        price = self.prices.get(instance_type or "")
        if price is None:
            return None
        if market == "spot" and price.spot is not None:
            return price.spot
        return price.on_demand

    @model_validator(mode="after")
    def _check_user_data(self) -> Ec2Profile:
        unknown = set(Template(self.user_data).get_identifiers()) - USER_DATA_VARIABLES
        if unknown or not Template(self.user_data).is_valid():
            raise ValueError(
                f"user_data uses unknown variable(s) {', '.join(sorted(unknown)) or '(invalid $)'}"
                f"; known: {', '.join(sorted(USER_DATA_VARIABLES))}"
            )
        return self


class ContainerProfile(_Profile):
    kind: Literal["container"]
    image: str
    command: list[str] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    cpus: float | None = Field(default=None, gt=0)
    memory: str | None = Field(default=None, pattern=r"^[1-9][0-9]*[bkmgBKMG]?$")
    timeout_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    network: str | None = None
    volumes: list[str] = Field(
        default_factory=list, description='Bind mounts, "host:container[:ro|rw]".'
    )
    working_dir: str | None = None
    max_concurrent: int = Field(default=4, ge=1, le=1000)
    price_per_hour: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check_volumes(self) -> ContainerProfile:
        self.mounts()
        return self

    def hourly_price(self, instance_type: str | None, market: str | None) -> float | None:
        return self.price_per_hour

    def mounts(self) -> dict[str, dict[str, str]]:
        """The volumes as the Docker API takes them."""
        found: dict[str, dict[str, str]] = {}
        for volume in self.volumes:
            parts = volume.split(":")
            mode = parts[2] if len(parts) == 3 else "rw"
            if len(parts) not in (2, 3) or not all(parts[:2]) or mode not in ("ro", "rw"):
                raise ValueError(f"volume {volume!r} must look like /host:/container[:ro|rw]")
            found[parts[0]] = {"bind": parts[1], "mode": mode}
        return found


Profile = Annotated[Ec2Profile | ContainerProfile, Field(discriminator="kind")]


class TagRule(_Strict):
    """Fallback when GitLab cannot tell a job's tags: first matching rule wins (globs)."""

    project_id: int | None = None
    project: str | None = None  # path_with_namespace glob, e.g. "group/*"
    job_name: str | None = None  # glob, e.g. "build:*"
    tags: list[str]

    def matches(self, project_id: int, project: str | None, job_name: str) -> bool:
        if self.project_id is not None and self.project_id != project_id:
            return False
        if self.project is not None and not fnmatch.fnmatchcase(project or "", self.project):
            return False
        return self.job_name is None or fnmatch.fnmatchcase(job_name, self.job_name)


class Profiles(_Strict):
    default: str | None = None
    profiles: dict[str, Profile] = Field(default_factory=dict)
    job_tags: list[TagRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Profiles:
        if self.default is not None and self.default not in self.profiles:
            raise ValueError(f"default names no profile: {self.default!r}")
        for name in self.profiles:
            if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"profile name {name!r}: 1-64 of [A-Za-z0-9_-]")
        return self

    def select(self, tags: Sequence[str]) -> str | None:
        """The profile for a job with ``tags``, or None when no profile can take it."""
        wanted = set(tags)
        if not wanted:
            if self.default is not None:
                return self.default
            untagged = [name for name, p in self.profiles.items() if p.run_untagged]
            return untagged[0] if untagged else None
        best: tuple[int, int, str] | None = None
        for order, (name, profile) in enumerate(self.profiles.items()):
            have = set(profile.tags)
            if wanted <= have:
                key = (len(have - wanted), order, name)
                best = key if best is None or key < best else best
        return None if best is None else best[2]

    def fallback_tags(self, project_id: int, project: str | None, job_name: str) -> list[str]:
        for rule in self.job_tags:
            if rule.matches(project_id, project, job_name):
                return list(rule.tags)
        return []


def parse_profiles(data: Any, source: str) -> Profiles:
    """Validate a loaded YAML document; errors name ``source`` and the field."""
    if data is None:
        data = {}
    try:
        return Profiles.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(SETTING, f"{source}: {where}: {message}") from None


def load_profiles(path: Path) -> Profiles:
    """The profiles in ``path``; a missing file means no profiles (every job is unmatched)."""
    if not path.exists():
        return Profiles()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(SETTING, f"{path}: cannot read: {exc}") from None
    return parse_profiles(data, str(path))


@dataclass(frozen=True, slots=True)
class LaunchOption:
    instance_type: str
    market: Literal["spot", "on-demand"]
    subnet_id: str | None = None


def subnets(profile: Ec2Profile) -> list[str | None]:
    if profile.subnet_ids:
        return list(profile.subnet_ids)
    return [profile.subnet_id]


def launch_options(profile: Ec2Profile, *, on_demand_only: bool = False) -> list[LaunchOption]:
    """What to try, in order: per instance type spot (when enabled, and not ``on_demand_only``)
    then on-demand, each across the profile's subnets in order -- a capacity or address error
    moves on to the next subnet, then market, then type, as an EC2 fleet diversifies."""
    markets: list[Literal["spot", "on-demand"]] = (
        ["spot", "on-demand"] if profile.spot and not on_demand_only else ["on-demand"]
    )
    return [
        LaunchOption(instance_type, market, subnet)
        for instance_type in profile.instance_types
        for market in markets
        for subnet in subnets(profile)
    ]


def render_user_data(profile: Ec2Profile, values: Mapping[str, object]) -> str:
    """The profile's user data with every variable substituted, shell-quoted."""
    quoted = {key: shlex.quote(str(value)) for key, value in values.items()}
    missing = set(Template(profile.user_data).get_identifiers()) - set(quoted)
    if missing:
        raise ValueError(f"no value for user-data variable(s) {', '.join(sorted(missing))}")
    return Template(profile.user_data).substitute(quoted)


def client_token(runner_name: str, attempt: int, option: LaunchOption) -> str:
    """RunInstances' idempotency token (≤ 64 characters); it includes the instance type and
    market because a retry with other parameters and the same token is refused by EC2
    (``IdempotentParameterMismatch``)."""
    token = f"{runner_name}-{attempt}-{option.instance_type}-{option.market}"
    if option.subnet_id is not None:
        token += f"-{option.subnet_id.removeprefix('subnet-')}"
    return token[-64:]


def run_instances_params(
    profile: Ec2Profile,
    option: LaunchOption,
    *,
    token: str,
    user_data: str,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """RunInstances parameters (PascalCase, as the API and the ``aws-sdk`` Task take them)."""
    params: dict[str, Any] = {
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": user_data,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [
            {
                "ResourceType": "instance",
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }
        ],
    }
    if profile.image_id is not None:
        params["ImageId"] = profile.image_id
    if profile.launch_template is not None:
        template = profile.launch_template
        ref = {"LaunchTemplateId": template.id} if template.id else {}
        ref |= {"LaunchTemplateName": template.name} if template.name else {}
        params["LaunchTemplate"] = {**ref, "Version": template.version}
    if profile.security_group_ids:
        params["SecurityGroupIds"] = list(profile.security_group_ids)
    if profile.iam_instance_profile is not None:
        key = "Arn" if profile.iam_instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: profile.iam_instance_profile}
    if profile.key_name is not None:
        params["KeyName"] = profile.key_name
    return with_option(params, option, token)


def with_option(params: Mapping[str, Any], option: LaunchOption, token: str) -> dict[str, Any]:
    """RunInstances parameters for one launch option: its instance type, market and subnet,
    and the ClientToken that goes with them."""
    chosen = dict(params)
    chosen["InstanceType"], chosen["ClientToken"] = option.instance_type, token
    chosen.pop("SubnetId", None)
    chosen.pop("InstanceMarketOptions", None)
    if option.subnet_id is not None:
        chosen["SubnetId"] = option.subnet_id
    if option.market == "spot":
        chosen["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        }
    return chosen
