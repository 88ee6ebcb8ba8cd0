"""Scaling settings: ``settings.scaling`` (:class:`app.config.scaling.ScalingSettings`,
``SMOKEHOUSE_SCALING_*``), and the policy's :class:`PolicyConfig` made from them."""

from __future__ import annotations

from app.config import load_section
from app.config.scaling import PREFIX, Backend, ScalingSettings
from app.scaling.policy import PolicyConfig

__all__ = ["PREFIX", "Backend", "ScalingSettings", "load_scaling_settings", "policy_config"]


def policy_config(scaling: ScalingSettings, concurrency: int) -> PolicyConfig:
    return PolicyConfig(
        min_workers=scaling.min_workers,
        max_workers=max(scaling.max_workers, scaling.min_workers, 1),
        concurrency=concurrency,
        target_backlog_per_worker=scaling.target_backlog_per_worker,
        target_latency_seconds=scaling.target_latency_seconds,
        stabilization_seconds=scaling.stabilization_seconds,
        idle_cooldown_seconds=scaling.idle_cooldown_seconds,
    )


def load_scaling_settings(**overrides: object) -> ScalingSettings:
    return load_section(ScalingSettings, **overrides)
