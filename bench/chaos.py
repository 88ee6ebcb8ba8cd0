"""Chaos: a steady mixed load on the production roles while processes and services die, then a
count of what was lost, doubled or left behind.

Everything is private to the run: PostgreSQL (its own cluster, ``initdb`` in a temp dir), Redis
(append-only, as compose runs it), Mosquitto (persistence on), moto's EC2 server and a stand-in
GitLab API; the roles are real processes: ``smokehouse api``, two ``worker``, ``ingest`` and two
``scheduler`` (leader and standby). The load, all the time:

* PutEvents (boto3, SigV4) matching a rule with a handler target and an HTTP target;
* Standard executions (StartExecution) of a machine with a Wait state and a handler task;
* GitLab jobs: pending hook -> an EC2 runner instance (moto) -> success hook -> terminated;
* 4 simulated Pis publishing readings at 10 Hz over MQTT 5, QoS 1, persistent sessions.

Faults, one after another: kill -9 of the API, of a busy worker, of both workers, of ingest, of
the scheduler leader; PostgreSQL, Redis and Mosquitto each down ~5 s; PostgreSQL crashed
(immediate stop) and restarted; the API and a worker together. A killed role is restarted at
once, as compose's ``restart: unless-stopped`` would (the killed scheduler is not: its standby
takes over). Each fault's **recovery** is the time from the kill (or the service's return) until
a canary sent after it shows its effect at the consumer.

Then the load stops, the system settles, and the bench counts, from the consumers' side:
``lost`` (acknowledged to the producer, never seen by the consumer), ``duplicated`` (one event,
execution or reading applied twice after the consumer's dedupe on the id smokehouse gives it),
``orphans`` (EC2 instances left running without a live job). One JSON line last, with the
doubled effects and the invocations that applied them (``duplicated_detail``). A workflow step
whose handler *reported* a failure after its effect landed (the database went away as it
committed) and that the state's ``Retry`` ran again is listed apart
(``retried_after_reported_failure``): that second attempt is ASL's documented at-least-once,
which a consumer absorbs with a key stable across attempts (``$$.Execution.Id`` and
``$$.State.EnteredTime``), not a duplicate smokehouse made.

    python bench/chaos.py            # ~4 minutes
    python bench/chaos.py --short    # CI: fewer faults, shorter gaps (~90 s)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
from common import ACCESS_KEYS, ROOT, SECRET_KEY, emit

from tests.services import free_port, moto_server, tcp_open, wait_for

PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/15/bin"))
KEY_ID, KEY_SECRET = ACCESS_KEYS.split(":")[:2]
WEBHOOK_TOKEN = "chaos-hook-5Gk2Rw8Yt3Mq7Hs1Bx9c"
DEVICES = 4
RATE_HZ = 10
PROFILES = """
default: small
profiles:
  small:
    kind: ec2
    tags: [aws]
    image_id: ami-12345678
    instance_types: [t3.small]
    max_lifetime_minutes: 60
    idle_timeout_minutes: 5
    max_concurrent: 50
"""
MACHINE = {
    "StartAt": "Pause",
    "States": {
        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Effect"},
        "Effect": {
            "Type": "Task",
            "Resource": "arn:aws:states:::smokehouse:task:chaos.effect",
            "Parameters": {"kind": "execution", "key.$": "$$.Execution.Name"},
            # The handler writes to the database the faults take away: as a real consumer
            # with a flaky dependency, it retries (otherwise the execution rightly FAILS).
            "Retry": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 10,
                    "BackoffRate": 1.5,
                }
            ],
            "End": True,
        },
    },
}


def duplicates_detail(engine: Any, doubled: list[str]) -> list[dict[str, Any]]:
    """For each doubled effect, the invocations that applied it (a delivery id, or an
    execution's task ref): which path let a duplicate through."""
    from sqlalchemy import text

    found: list[dict[str, Any]] = []
    with engine.connect() as connection:
        for item in doubled:
            kind, _, key = item.partition(":")
            if kind == "reading":
                found.append({"effect": item})
                continue
            rows = connection.execute(
                text("SELECT invocation FROM chaos_effects WHERE kind = :k AND key = :key"),
                {"k": kind, "key": key},
            ).all()
            found.append({"effect": item, "invocations": [r[0] for r in rows]})
    return found


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- private services -----------------------------------------------------------------------


class Service:
    """A process the bench can kill and start again with the same command."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.argv, self.env, self.logs = name, argv, env, logs
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = threading.RLock()

    def start(self) -> None:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self._spawn()

    def _spawn(self) -> None:
        out = (self.logs / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with self.lock:
            self._kill(sig)

    def _kill(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@contextmanager
def postgres(tmp: Path) -> Iterator[tuple[str, Callable[[str], None]]]:
    """A PostgreSQL cluster of our own; yields its URL and ``control("stop"|"crash"|"start")``."""
    data, sock = tmp / "pg", tmp / "pgsock"
    data.mkdir()
    sock.mkdir()
    shutil.chown(data, "postgres")
    shutil.chown(sock, "postgres")
    port = free_port()
    run = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"

    def control(action: str) -> None:
        pg_ctl = [*run, str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
        if action == "start":
            command = [*pg_ctl, "-o", options, "-l", str(sock / "pg.log"), "start"]
        else:
            command = [*pg_ctl, "-m", "immediate" if action == "crash" else "fast", "stop"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    control("start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", control
    finally:
        subprocess.run(
            [*run, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def redis_service(tmp: Path) -> tuple[Service, str]:
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--appendonly",
        "yes",
        "--dir",
        str(tmp),
        "--save",
        "",
    ]
    return Service("redis", argv, dict(os.environ), tmp), f"redis://127.0.0.1:{port}/0"


def mosquitto_service(tmp: Path) -> tuple[Service, str]:
    port = free_port()
    store = tmp / "mosquitto-data"  # Mosquitto drops to its own user: the store must be its
    store.mkdir()
    shutil.chown(store, "mosquitto")
    shipped = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    kept = [line for line in shipped if not line.startswith(("listener", "persistence", "log_"))]
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                *kept,
                f"listener {port} 127.0.0.1",
                "persistence true",
                f"persistence_location {store}/",
                "",
            ]
        )
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return Service("mosquitto", [binary, "-c", str(conf)], dict(os.environ), tmp), (
        f"mqtt://127.0.0.1:{port}"
    )


# --- consumers ------------------------------------------------------------------------------


class HttpReceiver:
    """The HTTP target: records every event id it is sent (its dedupe key)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = json.loads(body)["detail"]["key"]
                with receiver.lock:
                    receiver.seen[key] = receiver.seen.get(key, 0) + 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# --- producers ------------------------------------------------------------------------------


class Load:
    """Producers on threads; what each got acknowledged, for the count at the end."""

    def __init__(
        self, api_url: str, mqtt_url: str, machine_arn: str, gitlab: Any, tmp: Path
    ) -> None:
        import boto3
        from botocore.config import Config

        # One attempt: botocore would resend an answer-lost PutEvents (a second event).
        config = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10)
        creds = {"aws_access_key_id": KEY_ID, "aws_secret_access_key": KEY_SECRET}
        self.events = boto3.client(
            "events", endpoint_url=api_url, region_name="us-east-1", config=config, **creds
        )
        self.sfn = boto3.client(
            "stepfunctions", endpoint_url=api_url, region_name="us-east-1", config=config, **creds
        )
        self.api_url, self.mqtt_url, self.machine_arn, self.gitlab = (
            api_url,
            mqtt_url,
            machine_arn,
            gitlab,
        )
        self.tmp = tmp
        self.stop = threading.Event()
        self.acked_events: list[str] = []
        self.ambiguous_events: list[str] = []
        self.executions: list[str] = []
        self.jobs: dict[int, str] = {}  # job id -> pending | success
        self.published: dict[str, list[int]] = {}
        self.sent_at: dict[str, float] = {}

    def put_event(self, key: str) -> bool:
        """One PutEvents; retried only while the API surely did not get it (refused)."""
        entry = {
            "Source": "chaos",
            "DetailType": "Effect",
            "Detail": json.dumps({"key": key, "kind": "event"}),
        }
        while not self.stop.is_set():
            try:
                answer = self.events.put_events(Entries=[entry])
            except (EndpointConnectionError, ConnectTimeoutError):
                time.sleep(0.2)  # never connected: the API did not get it
                continue
            except Exception:
                # Sent, and the answer was lost (ConnectionClosedError when the API was killed
                # after it committed, a read timeout...): a second PutEvents would be a second
                # event, as on AWS. Its name matched "Connect" once, and the bench resent it.
                self.ambiguous_events.append(key)
                return False
            if answer["FailedEntryCount"] == 0:
                self.acked_events.append(key)
                self.sent_at[key] = time.monotonic()
                return True
            time.sleep(0.2)  # refused (database down): the producer tries again
        return False

    def events_loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self.put_event(f"e{n}")
            self.stop.wait(0.1)

    def executions_loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            name = f"x{n}"
            while not self.stop.is_set():
                try:  # StartExecution is idempotent by name: retrying is safe
                    self.sfn.start_execution(
                        stateMachineArn=self.machine_arn, name=name, input="{}"
                    )
                    self.executions.append(name)
                    break
                except Exception:
                    time.sleep(0.3)
            self.stop.wait(0.5)

    def gitlab_loop(self) -> None:
        import httpx

        from app.runners.transitions import runner_name
        from tests.integration.runners.payloads import INSTANCE, headers, job_hook, runner_block

        def post(payload: dict[str, Any], key: str) -> None:
            self.gitlab.hook(payload)
            while not self.stop.is_set():  # GitLab retries a failed delivery, same key
                try:
                    answer = httpx.post(
                        f"{self.api_url}/webhooks/gitlab",
                        json=payload,
                        headers=headers(key, token=WEBHOOK_TOKEN),
                        timeout=10,
                    )
                    if answer.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)

        job = 900_000
        while not self.stop.is_set():
            job += 1
            self.gitlab.jobs[(380, job)] = {"id": job, "name": "test", "tag_list": ["aws"]}
            post(job_hook(job, "pending"), f"p{job}")
            self.jobs[job] = "pending"
            name = runner_name(INSTANCE, job)
            deadline = time.monotonic() + 30
            created = None
            while time.monotonic() < deadline and not self.stop.is_set():
                created = next(
                    (r for r in list(self.gitlab.runners.values()) if r["description"] == name),
                    None,
                )
                if created is not None:
                    break
                time.sleep(0.5)
            if created is not None:
                self.stop.wait(2)
                running = runner_block(created["id"], name, ["aws"])
                post(job_hook(job, "running", runner=running), f"r{job}")
                post(job_hook(job, "success", runner=running), f"s{job}")
                self.jobs[job] = "success"
            self.stop.wait(2)

    def devices_loop(self) -> None:
        run_devices(self.mqtt_url, self.published, self.stop, self.tmp)


def run_devices(
    mqtt_url: str, published: dict[str, list[int]], stop: threading.Event, tmp: Path
) -> None:
    """The Pis: the device package's own publisher (an SQLite offline buffer, QoS 1, a row
    deleted only on its PUBACK) at ``RATE_HZ``, each reading's seq recorded as published."""
    from smokehouse_device.buffer import ReadingBuffer
    from smokehouse_device.publisher import MqttPublisher, MqttSettings

    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    devices = []
    for d in range(DEVICES):
        device = f"pi{d}"
        published[device] = []
        buffer = ReadingBuffer(tmp / f"{device}-buffer.db")
        settings = MqttSettings(
            host=host,
            port=int(port),
            client_id=f"bench-{device}",
            reconnect_min_s=0.2,
            reconnect_max_s=2.0,
            resend_wait_s=3.0,
        )
        publisher = MqttPublisher(settings, device, buffer)
        publisher.start()
        devices.append((device, buffer, publisher))
    while not stop.is_set():
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for device, buffer, publisher in devices:
            reading = buffer.append(
                lambda seq, device=device, stamp=stamp: json.dumps(
                    {
                        "device_id": device,
                        "seq": seq,
                        "ts": stamp,
                        "probes": [{"id": "pit", "temp_c": 110.0, "status": "ok"}],
                    }
                )
            )
            published[device].append(reading.seq)
            publisher.notify()
        stop.wait(1 / RATE_HZ)
    done = threading.Event()
    for _, buffer, publisher in devices:  # the Pi keeps what the broker has not acknowledged
        publisher.flush(done, timeout=60)
        publisher.stop()
        buffer.close()


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="CI: fewer faults, shorter gaps")
    args = parser.parse_args()
    gap = 6.0 if args.short else 12.0
    down = 5.0

    import boto3
    from sqlalchemy import create_engine, text

    import app.wiring  # noqa: F401
    from app.bus.definitions import apply_all as apply_rules
    from app.config import load_settings
    from app.db import get_database, utcnow
    from app.iot.models import Device
    from app.migrate import upgrade
    from app.workflows.definitions import apply_all as apply_machines
    from tests.integration.runners.fake_gitlab import FakeGitLab

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-chaos-")))
        tmp.chmod(0o755)
        logs = tmp / "logs"
        logs.mkdir()
        database_url, pg = stack.enter_context(postgres(tmp))
        redis, redis_url = redis_service(tmp)
        mosquitto, mqtt_url = mosquitto_service(tmp)
        for service in (redis, mosquitto):
            service.start()
            stack.callback(service.stop)
        wait_for(lambda: tcp_open(redis_url, 0), 10, what="redis")
        wait_for(lambda: tcp_open(mqtt_url, 0), 10, what="mosquitto")
        moto = stack.enter_context(moto_server())
        gitlab = stack.enter_context(FakeGitLab())
        gitlab.projects[380] = {"id": 380, "path_with_namespace": "gitlab-org/gitlab-test"}
        receiver = HttpReceiver()
        profiles = tmp / "runners.yaml"
        profiles.write_text(PROFILES)
        http_port = free_port()
        api_url = f"http://127.0.0.1:{http_port}"
        values: dict[str, Any] = {
            "data_dir": tmp / "data",
            "database_url": database_url,
            "broker_url": redis_url,
            "redis_url": redis_url.replace("/0", "/1"),
            "mqtt_url": mqtt_url,
            "secret_key": SECRET_KEY,
            "access_keys": ACCESS_KEYS,
            "http_port": http_port,
            "log_level": "INFO",
            "log_format": "console",
            "handler_modules": "bench.chaos_handlers",
            "bus_claim_seconds": 10,
            "bus_sweep_grace_seconds": 5,
            "workflow_task_lease_seconds": 6,
            "workflow_sweep_grace_seconds": 5,
        }
        env = {
            **os.environ,
            **moto,
            **{f"SMOKEHOUSE_{k.upper()}": str(v) for k, v in values.items()},
            "PYTHONPATH": str(ROOT),  # not bench/: its graphql.py would shadow the package
            "SMOKEHOUSE_SCHEDULER_LEASE_SECONDS": "3",
            "SMOKEHOUSE_EGRESS_ALLOW": "127.0.0.1",
            "SMOKEHOUSE_GITLAB_URL": gitlab.url,
            "SMOKEHOUSE_GITLAB_API_TOKEN": gitlab.token,
            "SMOKEHOUSE_GITLAB_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "SMOKEHOUSE_RUNNERS_PROFILES_FILE": str(profiles),
            "SMOKEHOUSE_IOT_CLIENT_ID": "chaos-ingest",
            "SMOKEHOUSE_SCALING_MESSAGE_SWEEP_GRACE_SECONDS": "5",
        }
        settings = load_settings(**values)
        upgrade(settings.sqlalchemy_url)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("SMOKEHOUSE_", "AWS_"))})
        import bench.chaos_handlers  # noqa: F401  (the producer side checks handler names)

        apply_machines(settings)
        apply_rules(settings)
        engine = create_engine(settings.sqlalchemy_url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "CREATE TABLE chaos_effects (kind text, key text, invocation text, "
                    "UNIQUE (kind, invocation))"
                )
            )
        database = get_database(settings.sqlalchemy_url)
        with database.session() as session:
            for d in range(DEVICES):
                session.add(
                    Device(
                        id=f"pi{d}",
                        name=f"pi{d}",
                        mqtt_username=f"pi{d}",
                        notify_urls=[],
                        home_assistant_discovery=False,
                        created_at=utcnow(),
                    )
                )
        me = [sys.executable, "-m", "app.cli"]
        roles = {
            "api": Service("api", [*me, "api", "--no-migrate"], env, logs),
            "worker1": Service(
                "worker1",
                [*me, "worker", "--queues=default,bus,workflows,runners,iot", "--concurrency=2"],
                {**env, "SMOKEHOUSE_WORKER_ID": "w1"},
                logs,
            ),
            "worker2": Service(
                "worker2",
                [*me, "worker", "--queues=default,bus,workflows,runners,iot", "--concurrency=2"],
                {**env, "SMOKEHOUSE_WORKER_ID": "w2"},
                logs,
            ),
            "ingest": Service("ingest", [*me, "ingest"], env, logs),
            "scheduler1": Service("scheduler1", [*me, "scheduler"], env, logs),
            "scheduler2": Service("scheduler2", [*me, "scheduler"], env, logs),
        }
        for role in roles.values():
            role.start()
            stack.callback(role.stop)
        restarts: dict[str, int] = {}
        supervising = threading.Event()

        def supervise() -> None:
            """What compose's ``restart: unless-stopped`` does: start a role that exited."""
            while not supervising.wait(1.0):
                for name, role in roles.items():
                    with role.lock:
                        if role.process is not None and role.process.poll() is not None:
                            log(f"  {name} exited ({role.process.returncode}): restarted")
                            restarts[name] = restarts.get(name, 0) + 1
                            role.start()

        threading.Thread(target=supervise, daemon=True).start()
        stack.callback(supervising.set)
        try:
            wait_for(lambda: tcp_open(api_url, http_port), 60, what="the API")
        except AssertionError:
            for name in ("api", "worker1", "scheduler1", "ingest"):
                log(f"{name}: {(logs / f'{name}.log').read_text()[-1500:]}")
            raise

        creds = {"aws_access_key_id": KEY_ID, "aws_secret_access_key": KEY_SECRET}
        sfn = boto3.client("stepfunctions", endpoint_url=api_url, region_name="us-east-1", **creds)
        events = boto3.client("events", endpoint_url=api_url, region_name="us-east-1", **creds)
        machine_arn = sfn.create_state_machine(
            name="chaos", definition=json.dumps(MACHINE), roleArn="arn:aws:iam::000000000000:role/x"
        )["stateMachineArn"]
        events.create_connection(
            Name="chaos",
            AuthorizationType="API_KEY",
            AuthParameters={
                "ApiKeyAuthParameters": {"ApiKeyName": "x-chaos", "ApiKeyValue": "chaos-value-1234"}
            },
        )
        destination = events.create_api_destination(
            Name="chaos",
            ConnectionArn=events.describe_connection(Name="chaos")["ConnectionArn"],
            InvocationEndpoint=receiver.url,
            HttpMethod="POST",
        )
        events.put_rule(Name="chaos", EventPattern=json.dumps({"source": ["chaos"]}))
        events.put_targets(
            Rule="chaos",
            Targets=[
                {"Id": "handler", "Arn": "arn:smokehouse:handler:chaos.effect"},
                {
                    "Id": "http",
                    "Arn": destination["ApiDestinationArn"],
                    "RoleArn": "arn:aws:iam::000000000000:role/x",
                },
            ],
        )

        load = Load(api_url, mqtt_url, machine_arn, gitlab, tmp)
        threads = [
            threading.Thread(target=fn, daemon=True)
            for fn in (load.events_loop, load.executions_loop, load.gitlab_loop, load.devices_loop)
        ]
        for thread in threads:
            thread.start()
        log("load running")

        def effect_seen(key: str) -> bool:
            with engine.connect() as connection:
                return bool(
                    connection.execute(
                        text("SELECT 1 FROM chaos_effects WHERE kind='event' AND key=:k"),
                        {"k": key},
                    ).first()
                )

        canaries = iter(range(10**9))

        def event_recovery(since: float) -> float:
            """Seconds from ``since`` until an event put after it shows its effect."""
            while True:
                key = f"canary{next(canaries)}"
                if load.put_event(key):
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        try:
                            if effect_seen(key):
                                return time.monotonic() - since
                        except Exception:
                            pass
                        time.sleep(0.2)
                    return float("inf")

        def reading_recovery(since: float) -> float:
            from app.iot.models import Reading

            def newest() -> Any:
                from sqlalchemy import func, select

                with database.session() as session:
                    return session.scalar(select(func.max(Reading.id)))

            start = newest() or 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if (newest() or 0) > start:
                        return time.monotonic() - since
                except Exception:
                    pass
                time.sleep(0.2)
            return float("inf")

        def scheduler_recovery(since: float, old_token: int) -> float:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    token = connection.execute(
                        text("SELECT token FROM leases WHERE name='scheduler'")
                    ).scalar()
                if token is not None and token > old_token:
                    return time.monotonic() - since
                time.sleep(0.2)
            return float("inf")

        def kill_and_restart(*names: str) -> Callable[[], float]:
            def fault() -> float:
                started = time.monotonic()
                for name in names:
                    with roles[name].lock:  # killed and started again, as compose would
                        roles[name].kill()
                        roles[name].start()
                if "ingest" in names:
                    return reading_recovery(started)
                return event_recovery(started)

            return fault

        def kill_leader() -> float:
            with engine.connect() as connection:
                holder, token = connection.execute(
                    text("SELECT holder, token FROM leases WHERE name='scheduler'")
                ).one()
            pids = {
                r.process.pid: n
                for n, r in roles.items()
                if r.process and n.startswith("scheduler")
            }
            name = next((n for pid, n in pids.items() if f":{pid}:" in holder), "scheduler1")
            started = time.monotonic()
            roles[name].kill()
            took = scheduler_recovery(started, token)
            roles[name].start()  # back as the standby
            return took

        def service_down(service: Service | str) -> Callable[[], float]:
            def fault() -> float:
                if service == "postgres":
                    pg("stop")
                    time.sleep(down)
                    pg("start")
                elif service == "postgres-crash":
                    pg("crash")
                    time.sleep(1)
                    pg("start")
                else:
                    assert isinstance(service, Service)
                    service.stop()
                    time.sleep(down)
                    service.start()
                back = time.monotonic()
                if service is mosquitto:
                    return reading_recovery(back)
                return event_recovery(back)

            return fault

        scenarios: list[tuple[str, Callable[[], float]]] = [
            ("kill -9 api", kill_and_restart("api")),
            ("kill -9 busy worker", kill_and_restart("worker1")),
            ("kill -9 ingest", kill_and_restart("ingest")),
            ("kill -9 scheduler leader", kill_leader),
            ("postgresql down 5 s", service_down("postgres")),
            ("redis down 5 s", service_down(redis)),
            ("mosquitto down 5 s", service_down(mosquitto)),
        ]
        if not args.short:
            scenarios += [
                ("kill -9 both workers", kill_and_restart("worker1", "worker2")),
                ("kill -9 api and a worker", kill_and_restart("api", "worker2")),
                ("postgresql crash (immediate stop)", service_down("postgres-crash")),
                ("kill -9 scheduler leader again", kill_leader),
            ]
        results: list[dict[str, Any]] = []
        time.sleep(gap)
        for name, fault in scenarios:
            log(f"fault: {name}")
            took = fault()
            log(f"  recovered in {took:.1f} s")
            results.append({"scenario": name, "recovery_s": round(took, 2)})
            time.sleep(gap)

        load.stop.set()
        for thread in threads:
            thread.join(90)
        log("load stopped; settling")

        def failed_first(item: str) -> bool:
            """The execution's history holds a TaskFailed: an attempt the handler reported
            failed before its Retry ran it again."""
            with engine.connect() as connection:
                return bool(
                    connection.execute(
                        text(
                            "SELECT 1 FROM execution_events e JOIN executions x "
                            "ON x.id = e.execution_id WHERE x.name = :name "
                            "AND e.type = 'TaskFailed'"
                        ),
                        {"name": item.partition(":")[2]},
                    ).first()
                )

        # Settle: wait until every acknowledged effect has arrived (or 120 s).
        def counts() -> dict[str, Any]:
            with engine.connect() as connection:
                rows = connection.execute(
                    text(
                        "SELECT kind, key, count(DISTINCT invocation) FROM chaos_effects "
                        "GROUP BY kind, key"
                    )
                ).all()
                readings = connection.execute(
                    text(
                        "SELECT device_id, seq, count(*) FROM iot_readings GROUP BY device_id, seq"
                    )
                ).all()
            applied = {(k, key): n for k, key, n in rows}
            stored = {(d, s): n for d, s, n in readings}
            lost_events = [k for k in load.acked_events if ("event", k) not in applied]
            lost_http = [k for k in load.acked_events if k not in receiver.seen]
            lost_runs = [x for x in load.executions if ("execution", x) not in applied]
            lost_readings = [
                (d, s) for d, seqs in load.published.items() for s in seqs if (d, s) not in stored
            ]
            doubled = [f"{k}:{key}" for (k, key), n in applied.items() if n > 1]
            doubled += [f"reading:{d}:{s}" for (d, s), n in stored.items() if n > 1]
            # A Task the handler *reported failed* (its commit's answer lost to the database
            # going away: the effect landed, the handler saw an error) is run again as a new
            # attempt by the state's Retry, as on AWS: the consumer's per-attempt dedupe cannot
            # absorb that, and it is not a duplicate smokehouse made. Counted apart.
            reported = [d for d in doubled if d.startswith("execution:") and failed_first(d)]
            duplicated = len(doubled) - len(reported)
            return {
                "doubled": [d for d in doubled if d not in reported],
                "retried_after_reported_failure": reported,
                "lost_events": lost_events,
                "lost_http": lost_http,
                "lost_executions": lost_runs,
                "lost_readings": lost_readings,
                "duplicated": duplicated,
                "http_redelivered": sum(n - 1 for n in receiver.seen.values() if n > 1),
            }

        deadline = time.monotonic() + 120
        found = counts()
        while time.monotonic() < deadline and any(
            found[k] for k in ("lost_events", "lost_http", "lost_executions", "lost_readings")
        ):
            time.sleep(2)
            found = counts()

        ec2 = boto3.client(
            "ec2",
            endpoint_url=moto["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        pending_jobs = {j for j, state in load.jobs.items() if state == "pending"}

        def orphaned() -> list[str]:
            """Instances of ours whose job is not live: finished, or never ours to run. An
            instance of a job still pending at the end (the load stopped mid-job) is not one."""
            pages = ec2.describe_instances(
                Filters=[
                    {"Name": "tag-key", "Values": ["smokehouse:job-id"]},
                    {"Name": "instance-state-name", "Values": ["pending", "running"]},
                ]
            )
            return [
                i["InstanceId"]
                for r in pages["Reservations"]
                for i in r["Instances"]
                if {t["Key"]: t["Value"] for t in i["Tags"]}["smokehouse:job-id"]
                not in {str(j) for j in pending_jobs}
            ]

        deadline = time.monotonic() + 90
        while orphaned() and time.monotonic() < deadline:
            time.sleep(2)
        orphans = len(orphaned())

        lost = sum(
            len(found[k]) for k in ("lost_events", "lost_http", "lost_executions", "lost_readings")
        )
        recoveries = [r["recovery_s"] for r in results]
        emit(
            {
                "bench": "chaos",
                "short": args.short,
                "scenarios": len(results),
                "lost": lost,
                "duplicated": found["duplicated"],
                "orphans": orphans,
                "max_recovery_s": max(recoveries),
                "recoveries": results,
                "events_acked": len(load.acked_events),
                "events_ambiguous": len(load.ambiguous_events),
                "executions": len(load.executions),
                "gitlab_jobs": len(load.jobs),
                "gitlab_jobs_never_started": len(pending_jobs),
                "readings_published": sum(len(s) for s in load.published.values()),
                "http_redelivered": found["http_redelivered"],
                "restarted_after_exit": restarts,
                "lost_detail": {
                    k: found[k][:10]
                    for k in ("lost_events", "lost_http", "lost_executions", "lost_readings")
                },
                "duplicated_detail": duplicates_detail(engine, found["doubled"][:10]),
                "retried_after_reported_failure": duplicates_detail(
                    engine, found["retried_after_reported_failure"][:10]
                ),
                "logs": str(logs) if lost or orphans or found["duplicated"] else None,
            }
        )
        if lost or orphans or found["duplicated"]:
            keep = Path(tempfile.mkdtemp(prefix="chaos-logs-"))
            shutil.copytree(logs, keep, dirs_exist_ok=True)
            log(f"logs kept in {keep}")


if __name__ == "__main__":
    main()
