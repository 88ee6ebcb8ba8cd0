"""Work-queue messages, the SQS stand-in: store a message for a handler or a state machine, run
it on a worker, record how it ended (sync result, or an async task-token callback).

Above :mod:`app.scaling` (it reads the autoscaled queue names from the scaling settings; the
autoscaler sizes pools from broker depth and never imports this package) and above
:mod:`app.workflows` (a message starts an execution; its tokens reach the callbacks through
:mod:`app.workflows.tokens`)."""
