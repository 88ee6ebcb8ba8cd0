"""A live uvicorn on 127.0.0.1 serving the AWS router with fake operations, for real boto3."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import uvicorn
from botocore.config import Config
from fastapi import FastAPI

from app.aws.protocol import aws_router
from tests.unit.aws.fake_ops import ClientFactory, State, build_registry
from tests.unit.aws.signing import ADMIN


@pytest.fixture(scope="session")
def server_state() -> State:
    return State()


@pytest.fixture(scope="session")
def live_server(server_state: State) -> Iterator[str]:
    app = FastAPI()
    app.include_router(
        aws_router(
            build_registry(server_state), lambda: server_state.keyring, clock=server_state.now
        )
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(autouse=True)
def _reset_state(server_state: State) -> None:
    server_state.reset()


@pytest.fixture
def aws_client(live_server: str) -> ClientFactory:
    """``aws_client("events", key=VIEWER, secret=..., region=...)``: real boto3, no retries."""

    def make(
        service: str, *, key: Any = ADMIN, secret: str | None = None, region: str = "eu-west-1"
    ) -> Any:
        return boto3.client(
            service,
            endpoint_url=live_server,
            aws_access_key_id=key.id,
            aws_secret_access_key=secret if secret is not None else key.secret,
            region_name=region,
            config=Config(retries={"total_max_attempts": 1}, proxies={}),
        )

    return make
