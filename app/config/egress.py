"""Outbound calls made on a user's behalf (``SMOKEHOUSE_EGRESS_*``): ``http:invoke``, API
destinations, notifications, and which ``aws-sdk`` actions state machines may call.

By default nothing on the loopback, link-local, private, unique-local or reserved ranges, no
cloud metadata address and none of the service's own ports is reachable (see
:mod:`app.egress`). ``ALLOW`` opens CIDRs and host names for targets on your LAN.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from app.config.section import section_config

PREFIX = "SMOKEHOUSE_EGRESS_"
_HOST = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")
_ACTION = re.compile(r"^[a-z0-9-]+:[a-zA-Z0-9*]+$")


def split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class EgressSettings(BaseSettings):
    model_config = section_config(PREFIX)

    allow: str = Field(
        default="",
        description="Comma-separated CIDRs (10.0.0.0/8, 192.168.1.20) and host names "
        "(nas.lan, *.lan) a user's outbound call may reach although their range is refused.",
    )
    timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Total deadline of one outbound call."
    )
    max_response_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Stop reading a response after this much."
    )
    max_redirects: int = Field(
        default=0, ge=0, le=20, description="Redirects http:invoke follows (each one checked)."
    )
    aws_sdk_allow: str = Field(
        default="",
        description="Comma-separated aws-sdk actions (ec2:describeImages, s3:*) allowed besides "
        "the ones the shipped state machines use.",
    )

    @field_validator("allow")
    @classmethod
    def _check_allow(cls, value: str) -> str:
        for entry in split_list(value):
            try:
                ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                if not _HOST.match(entry.lower()):
                    raise ValueError(
                        f"{entry!r} is neither a CIDR nor a host name (nas.lan, *.lan)"
                    ) from None
        return value

    @field_validator("aws_sdk_allow")
    @classmethod
    def _check_actions(cls, value: str) -> str:
        for entry in split_list(value):
            if not _ACTION.match(entry):
                raise ValueError(f"{entry!r} is not <service>:<action> (ec2:describeImages, s3:*)")
        return value
