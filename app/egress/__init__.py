"""The egress policy for every outbound call made on a user's behalf (``http:invoke``, API
destinations, notifications): which addresses may be reached (:mod:`.addresses`,
:mod:`.policy`) and an HTTP client that holds to it, pinned against DNS rebinding, with a
total deadline and a response size cap (:mod:`.client`). A low layer: domains import it."""

from app.egress.client import Response, request
from app.egress.policy import (
    EgressError,
    EgressPolicy,
    EgressRefused,
    EgressTimeout,
    EgressTooLarge,
    EgressUnresolved,
    policy_for,
)

__all__ = [
    "EgressError",
    "EgressPolicy",
    "EgressRefused",
    "EgressTimeout",
    "EgressTooLarge",
    "EgressUnresolved",
    "Response",
    "policy_for",
    "request",
]
