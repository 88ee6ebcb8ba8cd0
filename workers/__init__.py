"""Celery workers: the app configured from Settings, and thin task modules per domain."""
