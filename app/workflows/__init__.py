"""Step Functions' stand-in: state machines run by smokehouse.

``asl/`` is the pure interpreter; around it, one module per concern:

* ``models``/``store`` — the tables and the one-transaction, compare-and-set write of a step;
* ``engine`` — Standard executions driven durably by workers (``workflows.*`` Celery tasks),
  ``dispatch`` (commit, then enqueue), ``leases`` (claims of running tasks), ``sweep`` (what
  a dead worker or a lost message left behind);
* ``express`` — Express executions in-process;
* ``resources/`` — what a Task state can call (handlers, any AWS API, our bus, HTTP);
* ``service``/``callbacks``/``api`` — the ``AWSStepFunctions.*`` operations;
* ``definitions`` — ``app/definitions/state_machines/*.asl.json`` registered at start-up;
* ``status`` — execution status changes as bus events.

WORKFLOWS.md describes the whole; ASL.md the interpreter.
"""
