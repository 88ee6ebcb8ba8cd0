"""EventBridge Scheduler: schedule groups and schedules (``boto3.client("scheduler")``), fired
through the bus's delivery path by the leading scheduler (:mod:`app.schedules.firer`)."""
