"""A cluster on one machine: the production roles on several hosts built from network namespaces,
then the loss of a whole host under load.

Hosts (``ip netns``, one veth pair each into a bridge that lives in a namespace of its own, so
no traffic touches the machine's own network):

* ``db``      10.213.0.1   PostgreSQL, Redis (append-only) and Mosquitto, bound to its address;
* ``node1``   10.213.0.11  ``smokehouse api``, ``worker``, ``ingest``, ``scheduler``;
* ``node2``   10.213.0.12  the same;
* ``client``  10.213.0.100 the load: PutEvents through both APIs (SigV4), readings over MQTT.

node2's scheduler starts first, so it holds the scheduler lease. Under load every process of node2
is killed at once and its link cut (host loss); the bench measures how long until node1's
scheduler holds the lease (``singleton_failover_s``); later node2 comes back. Then the load stops,
the cluster settles, and the bench counts: ``lost`` (accepted events whose handler effect never
came, published readings never stored), ``duplicated`` (an event applied under two deliveries, a
reading stored twice), ``orphans`` (work a dead host left claimed: deliveries, work-queue
messages or executions still unfinished after the settle). One JSON line last.

Needs root (namespaces). Everything is removed on exit, whatever happens.

    python bench/cluster.py            # ~2 minutes
    python bench/cluster.py --short    # CI (~70 s)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import ACCESS_KEYS, ROOT, SECRET_KEY, emit

PREFIX = f"shc{os.getpid() % 10000}"
NET = f"{PREFIX}-net"
HOSTS = {
    "db": "10.213.0.1",
    "node1": "10.213.0.11",
    "node2": "10.213.0.12",
    "client": "10.213.0.100",
}
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/15/bin"))
KEY_ID, KEY_SECRET = ACCESS_KEYS.split(":")[:2]
DEVICES = 4
REDIS_PASSWORD = "cluster-redis-8Kd2Vq7Xw4Lm1Pz9"  # as compose: Redis off loopback wants one


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    if check and done.returncode:
        raise SystemExit(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


def ns(host: str) -> str:
    return f"{PREFIX}-{host}"


def in_ns(host: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns(host), *argv]


# --- the network ----------------------------------------------------------------------------


def build_network() -> None:
    sh("ip", "netns", "add", NET)
    sh("ip", "netns", "exec", NET, "ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "netns", "exec", NET, "ip", "link", "set", "br0", "up")
    for index, (host, address) in enumerate(HOSTS.items()):
        name = ns(host)
        sh("ip", "netns", "add", name)
        inside, outside = f"{PREFIX}h{index}i", f"{PREFIX}h{index}o"
        sh("ip", "link", "add", inside, "type", "veth", "peer", "name", outside)
        sh("ip", "link", "set", inside, "netns", name)
        sh("ip", "link", "set", outside, "netns", NET)
        sh("ip", "netns", "exec", NET, "ip", "link", "set", outside, "master", "br0", "up")
        sh(*in_ns(host, "ip", "link", "set", "lo", "up"))
        sh(*in_ns(host, "ip", "link", "set", inside, "name", "eth0"))
        sh(*in_ns(host, "ip", "addr", "add", f"{address}/24", "dev", "eth0"))
        sh(*in_ns(host, "ip", "link", "set", "eth0", "up"))


def link(host: str, up: bool) -> None:
    sh(*in_ns(host, "ip", "link", "set", "eth0", "up" if up else "down"))


def tear_down() -> None:
    """Kill whatever runs in our namespaces, then delete them (veths and bridge go with them)."""
    for host in (*HOSTS, "net"):
        name = NET if host == "net" else ns(host)
        pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "delete", name, check=False)


# --- processes ------------------------------------------------------------------------------


class Proc:
    def __init__(self, host: str, name: str, argv: list[str], env: dict[str, str], logs: Path):
        self.host, self.name, self.argv, self.env, self.logs = host, name, argv, env, logs
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = (self.logs / f"{self.host}-{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            in_ns(self.host, *self.argv),
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def psql(query: str) -> str:
    return sh(
        *in_ns("db", "psql", "-h", HOSTS["db"], "-U", "postgres", "-d", "postgres", "-tAc", query)
    ).stdout.strip()


# --- the client (runs inside the client namespace) ------------------------------------------


def client(seconds: float, out: str, rate_hz: float) -> None:
    """The load: PutEvents alternately through both APIs (accepted keys recorded), readings at
    ``rate_hz`` per device over MQTT 5 QoS 1 (published seqs recorded)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ConnectionError as NotSent

    # One attempt, no retry by botocore: ``max_attempts: 1`` would be one *retry*, and botocore
    # resends on a closed connection or a read timeout -- a PutEvents whose answer was lost, put
    # twice (the duplicate the cluster bench once showed: one key stored as two events).
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=5)
    apis = [
        boto3.client(
            "events",
            endpoint_url=f"http://{HOSTS[n]}:8000",
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=KEY_SECRET,
            config=config,
        )
        for n in ("node1", "node2")
    ]
    errors: dict[str, int] = {}  # by exception class: what the client saw when a host went
    result: dict[str, Any] = {
        "acked": [],
        "ambiguous": 0,
        "errors": errors,
        "published": {},
        "rate": [],
    }
    stop = threading.Event()
    lock = threading.Lock()

    def seen(error: str, ambiguous: bool = False) -> None:
        with lock:
            errors[error] = errors.get(error, 0) + 1
            result["ambiguous"] += ambiguous

    def events(index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            key = f"t{index}-{n}"
            entry = {
                "Source": "cluster",
                "DetailType": "Effect",
                "Detail": json.dumps({"key": key, "kind": "event"}),
            }
            for attempt in range(20):
                api = apis[(n + attempt) % 2]
                try:
                    answer = api.put_events(Entries=[entry])
                except NotSent as exc:
                    # botocore's ConnectionError family (EndpointConnectionError, ConnectTimeout-
                    # Error) means no connection was made: not received, try the other API. Its
                    # ConnectionClosedError (dropped after the request went out) is not in it.
                    seen(f"retried {type(exc).__name__}")
                    continue
                except Exception as exc:
                    # Sent, answer lost (a reset, a closed connection, a read timeout): the API
                    # may have committed it. PutEvents has no idempotency token (on AWS either),
                    # so a retry here could put the event twice; count it, don't resend.
                    seen(type(exc).__name__, ambiguous=True)
                    break
                if answer["FailedEntryCount"] == 0:
                    with lock:
                        result["acked"].append(key)
                        result["rate"].append(time.monotonic())
                    break
                time.sleep(0.2)

    def devices() -> None:
        from chaos import run_devices  # the same Pis as the chaos bench: the device package

        run_devices(f"mqtt://{HOSTS['db']}:1883", result["published"], stop, Path(out).parent)

    threads = [threading.Thread(target=events, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=devices))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    result["started"] = started
    Path(out).write_text(json.dumps(result))


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true")
    parser.add_argument(
        "--client", nargs=3, metavar=("SECONDS", "OUT", "RATE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.client:
        client(float(args.client[0]), args.client[1], float(args.client[2]))
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/cluster.py needs root (network namespaces)")
    load_seconds = 40.0 if args.short else 80.0
    loss_at = 12.0 if args.short else 25.0
    back_after = 12.0 if args.short else 25.0

    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    tmp.chmod(0o755)
    logs = tmp / "logs"
    logs.mkdir()
    procs: list[Proc] = []

    def cleanup() -> None:
        for proc in procs:
            proc.kill()
        tear_down()
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        result = run(tmp, logs, procs, load_seconds, loss_at, back_after)
    finally:
        kept = Path(tempfile.mkdtemp(prefix="cluster-logs-"))
        shutil.copytree(logs, kept, dirs_exist_ok=True)
        log(f"logs kept in {kept}")
        cleanup()
        atexit.unregister(cleanup)
    emit({**result, "short": args.short})


def run(
    tmp: Path, logs: Path, procs: list[Proc], load_seconds: float, loss_at: float, back_after: float
) -> dict[str, Any]:
    build_network()
    db = HOSTS["db"]
    # db: PostgreSQL, Redis, Mosquitto on its address only.
    data, sock = tmp / "pg", tmp / "pgsock"
    for path in (data, sock):
        path.mkdir()
        shutil.chown(path, "postgres")
    sh(
        "runuser",
        "-u",
        "postgres",
        "--",
        str(PG_BIN / "initdb"),
        "-D",
        str(data),
        "-A",
        "trust",
        "-U",
        "postgres",
    )
    with (data / "pg_hba.conf").open("a") as hba:  # the cluster's own network, trusted
        hba.write("host all all 10.213.0.0/24 trust\n")
    sh(
        *in_ns(
            "db",
            "runuser",
            "-u",
            "postgres",
            "--",
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-o",
            f"-k {sock} -c listen_addresses={db} -c fsync=off",
            "-l",
            str(sock / "pg.log"),
            "start",
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOKEHOUSE_")}
    redis = Proc(
        "db",
        "redis",
        [
            shutil.which("redis-server") or "redis-server",
            "--bind",
            db,
            "--port",
            "6379",
            "--appendonly",
            "yes",
            "--dir",
            str(tmp),
            "--save",
            "",
            "--requirepass",
            REDIS_PASSWORD,
        ],
        env,
        logs,
    )
    store = tmp / "mosquitto"
    store.mkdir()
    shutil.chown(store, "mosquitto")
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener 1883 {db}\nallow_anonymous true\npersistence true\n"
        f"persistence_location {store}/\nmax_queued_messages 100000\n"
    )
    mosquitto = Proc(
        "db",
        "mosquitto",
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        env,
        logs,
    )
    for proc in (redis, mosquitto):
        proc.start()
        procs.append(proc)
    database_url = f"postgresql://postgres@{db}:5432/postgres"
    role_env = {
        **env,
        "PYTHONPATH": str(ROOT),
        "SMOKEHOUSE_DATABASE_URL": database_url,
        "SMOKEHOUSE_BROKER_URL": f"redis://:{REDIS_PASSWORD}@{db}:6379/0",
        "SMOKEHOUSE_REDIS_URL": f"redis://:{REDIS_PASSWORD}@{db}:6379/1",
        "SMOKEHOUSE_MQTT_URL": f"mqtt://{db}:1883",
        "SMOKEHOUSE_SECRET_KEY": SECRET_KEY,
        "SMOKEHOUSE_ACCESS_KEYS": ACCESS_KEYS,
        "SMOKEHOUSE_HTTP_HOST": "0.0.0.0",
        "SMOKEHOUSE_HTTP_PORT": "8000",
        "SMOKEHOUSE_LOG_FORMAT": "console",
        "SMOKEHOUSE_HANDLER_MODULES": "bench.chaos_handlers",
        "SMOKEHOUSE_SCHEDULER_LEASE_SECONDS": "3",
        "SMOKEHOUSE_BUS_CLAIM_SECONDS": "10",
        "SMOKEHOUSE_BUS_SWEEP_GRACE_SECONDS": "5",
        "SMOKEHOUSE_WORKFLOW_TASK_LEASE_SECONDS": "6",
        "SMOKEHOUSE_WORKFLOW_SWEEP_GRACE_SECONDS": "5",
    }
    py = [sys.executable, "-m", "app.cli"]
    wait(lambda: psql("select 1") == "1", 30, "PostgreSQL on db")
    migrate = subprocess.run(in_ns("node1", *py, "migrate"), env=role_env, capture_output=True)
    if migrate.returncode:
        raise SystemExit(migrate.stderr.decode()[-2000:])
    psql(
        "CREATE TABLE chaos_effects (kind text, key text, invocation text, "
        "UNIQUE (kind, invocation))"
    )
    for d in range(DEVICES):
        psql(
            f"INSERT INTO iot_devices (id, name, mqtt_username, notify_urls, "
            f"home_assistant_discovery, created_at) VALUES ('pi{d}', 'pi{d}', 'pi{d}', '[]', "
            f"false, now())"
        )
    setup = (
        "import app.wiring, json;"
        "from app.config import load_settings;"
        "from app.bus.definitions import apply_all as r;"
        "from app.workflows.definitions import apply_all as m;"
        "s = load_settings(); m(s); r(s)"
    )
    subprocess.run(
        in_ns("node1", sys.executable, "-c", setup), env=role_env, check=True, capture_output=True
    )

    nodes: dict[str, list[Proc]] = {}
    for node in ("node2", "node1"):  # node2's scheduler first: it holds the lease
        node_env = {
            **role_env,
            "SMOKEHOUSE_IOT_CLIENT_ID": f"ingest-{node}",
            "SMOKEHOUSE_WORKER_ID": f"worker-{node}",
        }
        nodes[node] = [
            Proc(node, "scheduler", [*py, "scheduler"], node_env, logs),
            Proc(node, "api", [*py, "api", "--no-migrate"], node_env, logs),
            Proc(
                node,
                "worker",
                [*py, "worker", "--queues=default,bus,workflows,iot", "--concurrency=2"],
                node_env,
                logs,
            ),
            Proc(node, "ingest", [*py, "ingest"], node_env, logs),
        ]
        for proc in nodes[node]:
            proc.start()
            procs.append(proc)
        if node == "node2":
            wait(
                lambda: psql("select holder from leases where name='scheduler'") != "",
                40,
                "node2's scheduler to lead",
            )
    wait(
        lambda: (
            sh(
                *in_ns(
                    "client",
                    "python3",
                    "-c",
                    "import socket;"
                    f"[socket.create_connection(('{HOSTS['node1']}',8000),1), "
                    f"socket.create_connection(('{HOSTS['node2']}',8000),1)]",
                ),
                check=False,
            ).returncode
            == 0
        ),
        60,
        "both APIs",
    )
    # The rule: source cluster -> the effect handler.
    rule = (
        "import boto3, json;"
        f"e = boto3.client('events', endpoint_url='http://{HOSTS['node1']}:8000', "
        f"region_name='us-east-1', aws_access_key_id='{KEY_ID}', "
        f"aws_secret_access_key='{KEY_SECRET}');"
        "e.put_rule(Name='cluster', EventPattern=json.dumps({'source': ['cluster']}));"
        "e.put_targets(Rule='cluster', Targets=[{'Id': 'h', "
        "'Arn': 'arn:smokehouse:handler:chaos.effect'}])"
    )
    subprocess.run(
        in_ns("client", sys.executable, "-c", rule),
        env={**env, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
    )
    leader = psql("select holder from leases where name='scheduler'")
    log(f"scheduler lease held by {leader}")

    out = tmp / "client.json"
    load = subprocess.Popen(
        in_ns(
            "client",
            sys.executable,
            str(Path(__file__)),
            "--client",
            str(load_seconds),
            str(out),
            "10",
        ),
        env={**env, "PYTHONPATH": str(ROOT)},
        stderr=(logs / "client.log").open("wb"),
    )
    log("load running")
    time.sleep(loss_at)
    token = int(psql("select token from leases where name='scheduler'") or 0)
    log("host loss: every process of node2 killed, its link cut")
    lost_at = time.monotonic()
    link("node2", up=False)
    for proc in nodes["node2"]:
        proc.kill()
    failover = None
    while time.monotonic() - lost_at < 60:
        if int(psql("select token from leases where name='scheduler'") or 0) > token:
            failover = time.monotonic() - lost_at
            break
        time.sleep(0.1)
    holder = psql("select holder from leases where name='scheduler'")
    log(f"scheduler lease now held by {holder} after {failover} s")
    time.sleep(back_after)
    log("node2 comes back")
    link("node2", up=True)
    for proc in nodes["node2"]:
        proc.start()
    load.wait(load_seconds + 120)
    sent = json.loads(out.read_text())
    rate = sent["rate"]
    first = [t for t in rate if t - sent["started"] < loss_at]
    events_per_s = len(first) / loss_at if first else 0.0

    log("settling")

    def applied_counts() -> dict[str, int]:
        return {
            k: int(n)
            for k, n in (
                line.split("|")
                for line in psql(
                    "select key, count(distinct invocation) from chaos_effects "
                    "where kind='event' group by key"
                ).splitlines()
                if line
            )
        }

    def count() -> tuple[list[str], list[tuple[str, int]], int]:
        applied = applied_counts()
        stored = {}
        for line in psql(
            "select device_id, seq, count(*) from iot_readings group by device_id, seq"
        ).splitlines():
            d, s, n = line.split("|")
            stored[(d, int(s))] = int(n)
        lost_events = [k for k in sent["acked"] if k not in applied]
        lost_readings = [
            (d, s) for d, seqs in sent["published"].items() for s in seqs if (d, s) not in stored
        ]
        duplicated = sum(1 for n in applied.values() if n > 1) + sum(
            1 for n in stored.values() if n > 1
        )
        return lost_events, lost_readings, duplicated

    def orphaned() -> list[str]:
        """Work still claimed or unfinished, one line each: a delivery, a queue message or an
        execution. Right after the load some are simply in flight, and one a dead host had
        claimed comes back only when its claim expires (``BUS_CLAIM_SECONDS`` plus the sweep's
        grace), so the settle waits for these as it waits for lost work."""
        return psql(
            "select 'delivery ' || id || ' ' || rule_name || ' attempts=' || attempts || "
            "' claimed_until=' || coalesce(claimed_until::text, '-') || ' next=' || "
            "next_attempt_at::text || ' error=' || coalesce(left(last_error, 120), '-') "
            "from deliveries where status='pending' "
            "union all select 'queue message ' || id::text || ' ' || status "
            "from queue_messages where status in ('running','waiting') "
            "union all select 'execution ' || arn from executions where status='RUNNING'"
        ).splitlines()

    settle_from = time.monotonic()
    deadline = settle_from + 90
    lost_events, lost_readings, duplicated = count()
    left = orphaned()
    log(f"at the load's end: {len(left)} unfinished, {len(lost_events)} events not yet applied")
    while (lost_events or lost_readings or left) and time.monotonic() < deadline:
        time.sleep(2)
        lost_events, lost_readings, duplicated = count()
        left = orphaned()
    log(f"settled in {time.monotonic() - settle_from:.1f} s; {len(left)} still unfinished")
    # What a duplicate was, so that one never goes unexplained: the key stored as two events
    # (the client put it twice) or one event delivered twice (smokehouse's own doing).
    twice = [k for k, n in applied_counts().items() if n > 1][:10]
    duplicated_detail = {
        key: {
            "events": int(
                psql(f"select count(*) from events where envelope->'detail'->>'key' = '{key}'")
            ),
            "invocations": psql(
                f"select string_agg(invocation, ',') from chaos_effects where key = '{key}'"
            ),
        }
        for key in twice
    }
    return {
        "bench": "cluster",
        "hosts": len(HOSTS),
        "lost": len(lost_events) + len(lost_readings),
        "duplicated": duplicated,
        "orphans": len(left),
        "singleton_failover_s": round(failover, 2) if failover is not None else None,
        "lease_seconds": 3,
        "events_per_s_two_nodes": round(events_per_s, 1),
        "events_acked": len(sent["acked"]),
        "events_ambiguous": sent["ambiguous"],
        "client_errors": sent["errors"],
        "readings_published": sum(len(s) for s in sent["published"].values()),
        "lost_detail": {"events": lost_events[:10], "readings": lost_readings[:10]},
        "duplicated_detail": duplicated_detail,
        "orphans_detail": left[:10],
    }


if __name__ == "__main__":
    main()
