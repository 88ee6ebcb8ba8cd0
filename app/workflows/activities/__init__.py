"""Step Functions activities: Task states whose ``Resource`` is an activity ARN
(``arn:aws:states:<region>:<account>:activity:<name>``), run by workers outside smokehouse that
poll ``GetActivityTask`` and answer with ``SendTaskSuccess``/``SendTaskFailure``/
``SendTaskHeartbeat``.

* :mod:`.models` — the ``activities`` and ``activity_tasks`` tables;
* :mod:`.offer` — what a step does with the activity tasks it schedules (makes them available
  to pollers, in the step's own transaction); imported by the dispatcher, so it must not import
  the engine;
* :mod:`.service` — CreateActivity & co., and the poller's claim (which records
  ``ActivityStarted`` through the engine's durable step);
* :mod:`.wake` — how a scheduled task wakes the long polls waiting for it (a registry:
  :mod:`app.wiring` plugs the live transport in, which the workflows may not import);
* :mod:`.api` — the ``AWSStepFunctions.*`` operations;
* :mod:`.resource` — the Task resource kind, for the rare task a worker picks up itself.
"""
