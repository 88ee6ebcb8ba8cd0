"""Map Runs: the child executions of distributed Map states.

* :mod:`.models` — ``map_runs`` (one row per Map Run: its ARN, parent execution, status,
  MaxConcurrency and thresholds, totals) and ``map_run_children`` (which execution runs which
  item or batch);
* :mod:`.service` — keeps those rows in step with the parent's interpreter state (called in the
  step's transaction), DescribeMapRun/ListMapRuns/UpdateMapRun, and the children's descriptions
  the ResultWriter exports;
* :mod:`.api` — the ``AWSStepFunctions.*`` operations.

The pure side (the Map Run's events, thresholds, batching) is in :mod:`app.workflows.asl`.
"""
