"""EventBridge's API on ``POST /`` (``X-Amz-Target: AWSEvents.<Op>``), so boto3's ``events`` client,
the AWS CLI and Terraform can manage smokehouse's buses, rules, targets, archives, replays,
connections and API destinations, and put events.

One small module per resource. Each handler is a thin adapter: the AWS kit has already checked
its parameters against botocore's model (types, required members, lengths, patterns, enums,
ranges; :mod:`app.aws.validate`), so it opens the call's unit of work, calls the domain service
(``app.bus.service``, ``app.bus.events``, ``app.bus.archives``, ``app.bus.connections``) and
shapes the answer exactly as botocore's service model describes it. Timestamps are ``datetime``
values; the protocol layer sends them as epoch seconds and boto3 turns them back into datetimes.
Checks the model cannot express (is this an event pattern? PutEvents' per-entry errors) stay in
the handlers and services.

Two calls leave the process after the commit, registered on the unit of work (a task must not
refer to a row that is not committed yet):

* PutEvents enqueues the new deliveries (``app.bus.outbox.enqueue_deliveries``); if that fails
  the rows are still there and the outbox sweeper sends them later, so the request succeeds.
* StartReplay starts the replay's runner (``app.bus.outbox.start_replay``); if that fails the
  replay is marked ``FAILED`` with the reason, instead of sitting in ``STARTING`` forever.

ARNs use the caller's signing region and smokehouse's account id. Buses, rules and the rest are
not partitioned by region: a client signing for another region sees the same resources.

Importing this package registers the operations on :data:`app.aws.operations.registry`.
"""

from app.bus.api import (
    archives,
    buses,
    connections,
    destinations,
    events,
    replays,
    rules,
    tags,
    targets,
)

__all__ = [
    "archives",
    "buses",
    "connections",
    "destinations",
    "events",
    "replays",
    "rules",
    "tags",
    "targets",
]
