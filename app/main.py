"""``create_app(settings)``: the FastAPI application with every router mounted."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import app
import app.bus.api  # registers the AWSEvents operations
import app.queues.sqs.api  # registers the AmazonSQS operations
import app.schedules.api  # registers the Scheduler operations (REST-JSON)
import app.wiring
import app.workflows.activities.api  # registers the AWSStepFunctions activity operations
import app.workflows.api  # registers the AWSStepFunctions operations
import app.workflows.map_runs.api  # registers DescribeMapRun, ListMapRuns, UpdateMapRun
from app.aws import aws_router, registry
from app.aws.rest import rest_registry, rest_router
from app.bus.definitions import apply_all
from app.config import Settings, load_settings
from app.credentials import keyring_for
from app.frontdoor import FrontDoor
from app.graphql.schema import graphql_router
from app.handlers import load_handler_modules
from app.health.routes import router as health_router
from app.heap import freeze_startup_heap
from app.logs import configure_logging
from app.middleware import RequestContextMiddleware
from app.migrate import upgrade
from app.queues.routes import router as queue_router
from app.runners.routes import router as runners_router
from app.runners.settings import warn_global_tokens
from app.secrets.keys import key_ring
from app.web.routes import install as install_web
from app.workflows.definitions import apply_all as apply_state_machines

log = logging.getLogger("smokehouse")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keyring = keyring_for(settings)
    key_ring(settings)  # production without SMOKEHOUSE_SECRET_KEY stops here, not at a 500 later
    load_handler_modules(settings.handler_module_list)

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            upgrade(settings.sqlalchemy_url)
        machines = apply_state_machines(settings)
        if machines.changed:
            log.info("state machines applied: %s", machines.summary())
        report = apply_all(settings)
        if report.changed:
            log.info("definitions applied: %s", report.summary())
        warn_global_tokens(settings)  # a global GitLab webhook token reaches every project
        log.info("api ready", extra={"mode": settings.mode, "url": settings.http_url})
        freeze_startup_heap()
        yield
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # its live gauges leave with it
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    api = FastAPI(title="smokehouse", version=app.__version__, lifespan=lifespan)
    api.state.settings = settings
    api.state.keyring = keyring
    # Innermost first: the front door sits inside the request log (its 401/413s are logged) and
    # inside CORS (a browser sees CORS headers on them).
    api.add_middleware(
        FrontDoor,
        keyring=lambda: keyring,
        webhook_max_bytes=settings.runners.webhook_max_bytes,
    )
    api.add_middleware(RequestContextMiddleware)
    api.include_router(health_router)
    api.include_router(graphql_router(), prefix="/graphql")
    api.include_router(queue_router)
    api.include_router(runners_router)
    api.include_router(aws_router(registry, lambda: keyring, settings=settings))
    api.include_router(rest_router(rest_registry, lambda: keyring, settings=settings))
    install_web(api, settings)  # GET / and /ui/…: the dashboard
    return api


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory app.main:create_app_from_env`` (several workers). Each
    worker process is spawned fresh, without the logging the CLI set up in the parent: set it
    up here, or a worker's logs would be lost (and its warnings printed unredacted)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
