"""Where domains plug into each other's registries: imported once by every entry point.

Domains that must not know each other meet through registries (DESIGN.md, "Rules of the house"):
the bus delivers to state machines through its target registry, and workflows resolve task
tokens held by work-queue messages through their token registry. Importing this module fills
both. Every process that serves requests or runs tasks imports it first -- ``create_app``, the
Celery worker app and the ``smokehouse`` command -- so no process can miss a registration
because it happened not to import some module.
"""

from __future__ import annotations

from app.bus.targets import register_adapter
from app.queues.messages import MessageTokens
from app.workflows.bus_target import StateMachineTarget
from app.workflows.tokens import register_token_holder

_installed = False


def install() -> None:
    """Register every cross-domain plug-in (idempotent)."""
    global _installed
    if _installed:
        return
    register_adapter(StateMachineTarget())
    register_token_holder(MessageTokens())
    _installed = True


install()
