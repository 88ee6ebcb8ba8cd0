"""The task broker as the app sees it: the queue names, the Celery configuration and client,
and the embedded SQLite transport. ``workers/`` builds its Celery app from here; the app never
imports ``workers/`` (it names the task modules by string, as Celery's ``include`` does)."""
