"""``make compose-check``: the README's production path, run for real with Podman.

Builds every image locally (images.sh: a Debian base from mmdebstrap, stand-ins for PostgreSQL,
Redis and Mosquitto from Debian's packages, smokehouse from the real Dockerfile), then in a copy
of the project follows the README: ``.env`` from ``.env.example`` with every CHANGE-ME replaced,
``smokehouse tls init``, ``podman-compose up -d``, ``device sync`` and Mosquitto's reload; waits
until every service's healthcheck passes and drives the stack as its users would:

- boto3 (SigV4, the published API port): an SQS queue, a rule that targets it, PutEvents, and
  the event received from the queue;
- GitLab: a Job Hook with the project's webhook token, answered within GitLab's 10 s;
- a Pi: ``smokehouse device add`` in the api container, then the real ``smokehouse-device`` agent
  (simulated probes) publishing over MQTT with TLS on the published port with those credentials;
- GraphQL: one query that sees the event, the job and the readings.

Then ``down`` and ``up -d`` again: the same query still sees them. ``down -v`` at the end (or on
failure, unless --keep). Prints each step with its time and one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
from cryptography.fernet import Fernet

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.runners.payloads import job_hook  # noqa: E402

#: podman-compose from the lockfile: Debian 12's 1.0.3 ignores `profiles` (it would start the
#: opt-in autoscaler) and has no `kill`.
PODMAN_COMPOSE = str(Path(sys.executable).parent / "podman-compose")
PROJECT = (
    "shcheck"  # COMPOSE_PROJECT_NAME: containers shcheck_api_1 …, apart from a real "smokehouse"
)
SERVICES = ("postgres", "redis", "mosquitto", "api", "worker", "scheduler", "ingest")
HEALTH_TIMEOUT = 300.0


def step(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Print the step, run it, print how long it took; the figures go into the JSON line."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            print(f"== {name}", flush=True)
            started = time.monotonic()
            result = func(*args, **kwargs)
            seconds = round(time.monotonic() - started, 1)
            TIMES[name] = seconds
            print(f"   ok in {seconds} s", flush=True)
            return result

        return run

    return wrap


TIMES: dict[str, float] = {}


def sh(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise SystemExit(
            f"compose-check: `{' '.join(map(str, args))}` exited {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def podman_env(work: Path) -> dict[str, str]:
    """runc, cgroupfs, file events and ulimits within this machine's hard limits: what Podman
    needs in a container without systemd (as tests/integration/scaling/podman.py)."""
    nofile = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    nproc = min(4096, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    conf = work / "containers.conf"
    conf.write_text(
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@step("build images (mmdebstrap base, Debian stand-ins, the Dockerfile)")
def build_images(env: dict[str, str]) -> dict[str, str]:
    names = sh("bash", HERE / "images.sh", env=env, timeout=1800).stdout.split()
    by_role = {n.rsplit("/", 1)[-1].split(":")[0]: n for n in names}
    return {
        "POSTGRES_IMAGE": by_role["postgres"],
        "REDIS_IMAGE": by_role["redis"],
        "MOSQUITTO_IMAGE": by_role["mosquitto"],
    }


def copy_project(dst: Path) -> None:
    """The project's files as a clone has them (tracked and new, nothing ignored)."""
    files = sh("git", "ls-files", "-z", "-co", "--exclude-standard", cwd=ROOT).stdout
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dst / name)


def secret_for(key: str) -> str:
    token = secrets.token_urlsafe(32)
    if key == "SMOKEHOUSE_ACCESS_KEYS":
        return f"AK{secrets.token_hex(9).upper()}:{token}:admin"
    if key == "SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS":
        return f"{token}@*"
    if key == "SMOKEHOUSE_SECRET_KEY":
        return Fernet.generate_key().decode()
    if key == "SMOKEHOUSE_IOT_DEVICE_MQTT_URL":
        return "mqtts://localhost:8883"
    if key.endswith("_PASSWORD"):
        return token
    raise SystemExit(f"compose-check: .env.example has a CHANGE-ME for {key} it cannot fill")


def write_env(project: Path, extra: dict[str, str]) -> dict[str, str]:
    """``cp .env.example .env`` and replace every CHANGE-ME, as the README says; then this
    check's ports and images (variables the compose file reads, defaults for Docker users)."""
    lines, values, extra = [], {}, dict(extra)
    for line in (project / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            if key in extra:
                value = extra.pop(key)
            elif "CHANGE-ME" in value:
                value = secret_for(key)
            line, values[key] = f"{key}={value}", value
        lines.append(line)
    lines += [f"{k}={v}" for k, v in extra.items()]
    values.update(extra)
    env_file = project / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)
    return values


class Stack:
    def __init__(self, project: Path, env: dict[str, str], values: dict[str, str]) -> None:
        self.project, self.env, self.values = project, env, values
        self.api = f"http://127.0.0.1:{values['API_PUBLISH'].rsplit(':', 1)[1]}"
        key_id, secret, _role = values["SMOKEHOUSE_ACCESS_KEYS"].split(":")
        self.key_id, self.secret = key_id, secret

    def compose(self, *args: str, timeout: float = 600) -> str:
        return sh(PODMAN_COMPOSE, *args, cwd=self.project, env=self.env, timeout=timeout).stdout

    def container(self, service: str) -> str:
        return f"{PROJECT}_{service}_1"

    def exec(self, service: str, *args: str) -> str:
        return sh("podman", "exec", self.container(service), *args, env=self.env).stdout

    def healthy(self, service: str) -> bool:
        """Podman runs healthchecks from systemd timers; without systemd, run them here."""
        run = sh("podman", "healthcheck", "run", self.container(service), env=self.env, check=False)
        return run.returncode == 0

    def wait_healthy(self) -> dict[str, float]:
        started, became, deadline = time.monotonic(), {}, time.monotonic() + HEALTH_TIMEOUT
        while len(became) < len(SERVICES):
            for service in SERVICES:
                if service not in became and self.healthy(service):
                    became[service] = round(time.monotonic() - started, 1)
            if time.monotonic() > deadline:
                logs = {
                    s: sh(
                        "podman",
                        "logs",
                        "--tail",
                        "30",
                        self.container(s),
                        env=self.env,
                        check=False,
                    ).stderr[-2000:]
                    for s in SERVICES
                    if s not in became
                }
                raise SystemExit(f"compose-check: not healthy after {HEALTH_TIMEOUT:.0f} s: {logs}")
            time.sleep(1)
        migrate = sh(
            "podman",
            "inspect",
            "--format",
            "{{.State.ExitCode}} {{.State.Status}}",
            self.container("migrate"),
            env=self.env,
        ).stdout.split()
        assert migrate == ["0", "exited"], f"migrate one-shot: {migrate}"
        return became

    def reload_mosquitto(self) -> None:
        self.compose("kill", "-s", "HUP", "mosquitto")

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.api,
            region_name="us-east-1",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """As the dashboard asks: a session from the access key, then the query."""
        # 30 s: the first query after a restart on a loaded CI machine once took over 10 s
        # (the restart itself 65 s instead of 21); this check is about the data, not latency.
        login = httpx.post(f"{self.api}/auth/session", json={"key": self.secret}, timeout=30)
        answer = httpx.post(
            f"{self.api}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {login.json()['token']}"},
            timeout=30,
        ).json()
        assert "errors" not in answer, answer
        assert "data" in answer, answer
        return answer["data"]  # type: ignore[no-any-return]


#: Podman 4.3 (Debian 12) fails to start a container whose `--requires` reach a one-shot that has
#: exited ("depends on container … not found in input list"); podman-compose passes them for
#: depends_on. --no-deps leaves them out: every role waits for the database and the migrations
#: itself (SMOKEHOUSE_DATABASE_WAIT_SECONDS), so the order they start in does not matter.
UP = ("up", "-d", "--no-deps")


@step("podman-compose up -d, until every service is healthy")
def up(stack: Stack) -> dict[str, float]:
    stack.compose(*UP)
    return stack.wait_healthy()


@step("device sync + Mosquitto reload (first start)")
def first_start(stack: Stack) -> None:
    stack.exec("api", "smokehouse", "device", "sync")
    stack.reload_mosquitto()


@step("boto3: SQS queue, rule targeting it, PutEvents, event received from the queue")
def events_flow(stack: Stack) -> dict[str, Any]:
    sqs, events = stack.client("sqs"), stack.client("events")
    queue = sqs.create_queue(QueueName="compose-check")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="compose-check", EventPattern=json.dumps({"source": ["compose.check"]}))
    events.put_targets(Rule="compose-check", Targets=[{"Id": "queue", "Arn": arn}])
    sent = time.monotonic()
    put = events.put_events(
        Entries=[{"Source": "compose.check", "DetailType": "check", "Detail": '{"n": 1}'}]
    )
    assert put["FailedEntryCount"] == 0, put
    event_id = put["Entries"][0]["EventId"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5).get("Messages", [])
        if got:
            body = json.loads(got[0]["Body"])
            assert body["id"] == event_id, body
            assert body["detail"] == {"n": 1}, body
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=got[0]["ReceiptHandle"])
            return {"event_id": event_id, "put_to_queue_s": round(time.monotonic() - sent, 2)}
    raise SystemExit("compose-check: the event never reached the SQS queue")


@step("GitLab Job Hook")
def gitlab_hook(stack: Stack) -> dict[str, Any]:
    token = stack.values["SMOKEHOUSE_GITLAB_WEBHOOK_TOKENS"].split("@")[0]
    job_id = 424242
    started = time.monotonic()
    answer = httpx.post(
        f"{stack.api}/webhooks/gitlab",
        json=job_hook(job_id, "pending"),
        headers={"X-Gitlab-Token": token, "X-Gitlab-Event": "Job Hook"},
        timeout=10,
    )
    seconds = time.monotonic() - started
    assert answer.status_code < 300, answer.text
    return {"job_id": job_id, "hook_answer_s": round(seconds, 3)}


@step("a Pi: device add, Mosquitto reload, smokehouse-device over MQTT/TLS")
def pi_readings(stack: Stack, work: Path) -> dict[str, Any]:
    added = json.loads(
        stack.exec(
            "api", "smokehouse", "device", "add", "Compose check", "--id", "check-pi", "--json"
        )
    )
    stack.reload_mosquitto()
    port = stack.values["MQTTS_PUBLISH"].rsplit(":", 1)[1]
    config = work / "pi.toml"
    config.write_text(
        f'device_id = "{added["device_id"]}"\nsample_interval_s = 0.5\nsimulator = true\n'
        f'[mqtt]\nurl = "mqtts://localhost:{port}"\nusername = "{added["username"]}"\n'
        f'password = "{added["password"]}"\n'
        f'ca_file = "{stack.project / "deploy/mosquitto/certs/ca.crt"}"\n'
        f'[buffer]\npath = "{work / "pi-buffer.sqlite3"}"\n'
    )
    agent = subprocess.Popen(
        [Path(sys.executable).parent / "smokehouse-device", "run", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while readings(stack) < 4:  # 10 s buckets of each simulated probe
            assert agent.poll() is None, agent.stderr.read() if agent.stderr else ""
            assert time.monotonic() < deadline, "the Pi's readings never reached GraphQL"
            time.sleep(1)
    finally:
        agent.terminate()
        agent.wait(20)
    # What the agent sent before it stopped is still on its way through Mosquitto and ingest.
    settled, last = 0, -1
    while settled < 3:
        points = readings(stack)
        settled, last = (settled + 1 if points == last else 0), points
        time.sleep(1)
    return {"device_id": added["device_id"], "readings": last}


#: One window for every readings query: the same buckets before and after the restart.
_NOW = datetime.now(UTC)
WINDOW = (_NOW - timedelta(hours=1), _NOW + timedelta(hours=1))


def readings(stack: Stack) -> int:
    data = stack.graphql(
        'query R($start: DateTime!, $end: DateTime!) { readings(deviceId: "check-pi", '
        "start: $start, end: $end) { probeId points { ts tempC } } }",
        {"start": WINDOW[0].isoformat(), "end": WINDOW[1].isoformat()},
    )
    return sum(len(series["points"]) for series in data["readings"])


SEEN = """
query Seen($source: String!) {
  events(source: $source, limit: 10) { id source }
  ciJobs(limit: 10) { jobId status }
  devices { id lastSeenAt }
}
"""


def seen(stack: Stack) -> dict[str, Any]:
    """What one GraphQL query sees of the three flows."""
    data = stack.graphql(SEEN, {"source": "compose.check"})
    return {
        "event_ids": sorted(e["id"] for e in data["events"]),
        "job_ids": sorted(j["jobId"] for j in data["ciJobs"]),
        "devices": sorted(d["id"] for d in data["devices"] if d["lastSeenAt"]),
        "readings": readings(stack),
    }


@step("backup from the api container, down -v (all data gone), up, restore, up")
def backup_and_restore(stack: Stack, work: Path) -> dict[str, Any]:
    archive = work / "smokehouse.tar.gz"
    with archive.open("wb") as out:
        made = subprocess.run(
            [PODMAN_COMPOSE, "exec", "-T", "api", "smokehouse", "backup", "-"],
            cwd=stack.project, env=stack.env, stdout=out, stderr=subprocess.PIPE, timeout=300,
            check=False,
        )  # fmt: skip
    assert made.returncode == 0, made.stderr.decode()[-2000:]
    stack.compose("down", "-v")
    stack.compose(*UP)
    stack.wait_healthy()
    stack.compose("stop", "api", "worker", "scheduler", "ingest")
    with archive.open("rb") as source:
        restored = subprocess.run(
            [PODMAN_COMPOSE, "run", "--rm", "--no-deps", "-T", "api", "restore", "-"],
            cwd=stack.project, env=stack.env, stdin=source, capture_output=True, timeout=300,
            check=False,
        )  # fmt: skip
    assert restored.returncode == 0, restored.stderr.decode()[-2000:]
    stack.compose(*UP)
    stack.wait_healthy()
    stack.exec("api", "smokehouse", "device", "sync")
    stack.reload_mosquitto()
    return {"backup_bytes": archive.stat().st_size}


@step("podman-compose down, up -d again, until healthy")
def restart(stack: Stack) -> dict[str, float]:
    stack.compose("down")
    stack.compose(*UP)
    return stack.wait_healthy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack up at the end")
    args = parser.parse_args()
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            raise SystemExit(f"compose-check: needs {tool} (apt-get install {tool})")
    work = Path(tempfile.mkdtemp(prefix="compose-check-"))
    env = podman_env(work)
    project = work / PROJECT
    project.mkdir()
    images = build_images(env)
    copy_project(project)
    values = write_env(
        project,
        {
            **images,
            "COMPOSE_PROJECT_NAME": PROJECT,
            "API_PUBLISH": f"127.0.0.1:{free_port()}",
            "MQTTS_PUBLISH": f"127.0.0.1:{free_port()}",
        },
    )
    sh(
        Path(sys.executable).parent / "smokehouse",
        "tls",
        "init",
        "--out",
        project / "deploy/mosquitto/certs",
        "--host",
        "localhost",
        "--host",
        "127.0.0.1",
    )
    stack = Stack(project, env, values)
    # A stack that a killed earlier run left (same project name) would hold the names.
    stack.compose("down", "-v", timeout=300)
    ok = False
    try:
        healthy_at = up(stack)
        first_start(stack)
        flows = {"events": events_flow(stack), "gitlab": gitlab_hook(stack)}
        flows["pi"] = pi_readings(stack, work)
        before = seen(stack)
        assert flows["events"]["event_id"] in before["event_ids"], before
        assert flows["gitlab"]["job_id"] in before["job_ids"], before
        assert "check-pi" in before["devices"], before
        healthy_again = restart(stack)
        after = seen(stack)
        assert after == before, f"lost across down/up: {before} -> {after}"
        flows["backup"] = backup_and_restore(stack, work)
        restored = seen(stack)
        assert restored == before, f"not restored: {before} -> {restored}"
        ok = True
    finally:
        if not (args.keep and ok):
            if not ok:
                print(sh("podman", "ps", "-a", env=env, check=False).stdout)
            stack.compose("down", "-v", timeout=300)
            shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "ok": ok,
                "seconds": TIMES,
                "healthy_after_s": healthy_at,
                "healthy_after_restart_s": healthy_again,
                **{k: v for flow in flows.values() for k, v in flow.items()},
                "seen_after_restart": {
                    k: len(v) if isinstance(v, list) else v for k, v in after.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
