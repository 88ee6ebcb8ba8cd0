"""The SQS-compatible API (``boto3.client("sqs")``) on the work-queue store: one queue system.

:mod:`.queues` (names, URLs, attributes, tags), :mod:`.messages` (send, receive, delete,
visibility, dead letters, FIFO), :mod:`.checksums` (SQS's MD5s), :mod:`.api` (the JSON protocol
operations, registered on the AWS operations registry when imported) and :mod:`.service` (what
other domains call -- the bus's SQS target, Step Functions' ``sqs:sendMessage``, Scheduler --
through registries filled in :mod:`app.wiring`).
"""
