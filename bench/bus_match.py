"""Benchmark: events/s through ``RuleMatcher.match`` with 10, 1,000 and 10,000 rules.

Run from the repository root::

    python bench/bus_match.py            # full run (about a minute or two)
    python bench/bus_match.py --quick    # smoke run (a few seconds)

Rules and events are generated from a fixed seed over three realistic event shapes (GitLab job
hooks, BBQ thermometer telemetry with an array of probe objects, EC2 state changes). Most rules
anchor on ``source``/``detail-type`` (a minority on prefix/suffix/wildcard/equals-ignore-case/
``$or`` instead) and add one selective condition (a project, device, instance, user, subnet...)
plus zero to two broad ones, drawn from every operator (exact, prefix, suffix,
equals-ignore-case, wildcard, numeric ranges, anything-but in all its forms, exists true/false,
cidr, ``$or``, nested and array-of-object fields). A fixed handful of rules (at most 25) are
broad only, like "every failed job"; 15% target sources no event carries. The baseline checks
every rule one by one with the reference matcher (and, for comparison, with the per-pattern
evaluator ``matches``). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.bus.patterns import Pattern, RuleMatcher, matches, parse_pattern
from app.bus.patterns.reference import reference_matches
from bench.common import tree_rss_mb

N_PROJECTS = 5000
GITLAB_HOST = "gitlab.example.com"
N_DEVICES = 3000
N_INSTANCES = 5000
N_USERS = 5000
N_COOKS = 20000
JOB_STATUSES = ["pending", "running", "success", "failed", "canceled"]
JOB_NAMES = [
    "test:unit",
    "test:integration",
    "lint",
    "build:image",
    "build:docs",
    "deploy:staging",
    "deploy:prod",
    "release:notes",
]
RUNNER_TAGS = ["docker", "arm64", "amd64", "gpu", "podman", "ec2", "large"]
REFS = [
    "main",
    "develop",
    "feature/login",
    "feature/search-42",
    "release/1.2",
    "release/2.0",
    "hotfix/crash",
]
EC2_STATES = ["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]
EC2_TYPES = ["t3.micro", "t3.large", "m6i.xlarge", "c7g.2xlarge", "g5.xlarge"]
PROBE_STATUSES = ["ok"] * 8 + ["open", "short"]


# -- events ---------------------------------------------------------------------------------
def _envelope(
    rng: random.Random,
    source: str,
    detail_type: str,
    detail: dict[str, Any],
    resources: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"{rng.getrandbits(64):016x}-{rng.getrandbits(32):08x}",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:17:42Z",
        "region": rng.choice(["eu-west-1", "us-east-1"]),
        "resources": resources or [],
        "detail": detail,
    }


def gitlab_event(rng: random.Random) -> dict[str, Any]:
    project = rng.randint(1, N_PROJECTS)
    status = rng.choice(JOB_STATUSES)
    name = rng.choice(JOB_NAMES)
    detail = {
        "object_kind": "build",
        "ref": rng.choice(REFS),
        "tag": rng.random() < 0.1,
        "build_id": rng.randint(1, 10**7),
        "build_name": name,
        "build_stage": name.split(":")[0],
        "build_status": status,
        "build_duration": round(rng.uniform(1, 3600), 2)
        if status in ("success", "failed")
        else None,
        "build_allow_failure": rng.random() < 0.2,
        "project_id": project,
        "project_name": f"group-{project % 40}/project-{project}",
        "runner": {
            "id": rng.randint(1, 50),
            "description": f"runner-{rng.randint(1, 50)}",
            "tags": rng.sample(RUNNER_TAGS, rng.randint(1, 3)),
        }
        if status != "pending"
        else None,
        "user": {
            "id": rng.randint(1, N_USERS),
            "email": f"dev{rng.randint(1, N_USERS)}@example.com",
        },
        "repository": {
            "homepage": f"https://gitlab.example.com/group-{project % 40}/project-{project}"
        },
    }
    if rng.random() < 0.3:
        detail["environment"] = rng.choice(["staging", "production"])
    return _envelope(rng, "smokehouse.gitlab", "GitLab Job Hook", detail)


def bbq_event(rng: random.Random) -> dict[str, Any]:
    device = rng.randint(1, N_DEVICES)
    probes = [
        {
            "id": f"probe-{i}",
            "temp_c": round(rng.uniform(15, 320), 1),
            "status": rng.choice(PROBE_STATUSES),
        }
        for i in range(1, rng.randint(1, 4) + 1)
    ]
    detail = {
        "device_id": f"pi-{device:03d}",
        "seq": rng.randint(1, 10**6),
        "ts": "2024-05-01T12:00:00Z",
        "cook_id": f"cook-{rng.randint(1, N_COOKS)}" if rng.random() < 0.8 else None,
        "probes": probes,
        "battery_pct": rng.randint(0, 100),
        "firmware": rng.choice(["1.4.2", "1.4.2", "1.5.0-rc1"]),
        "ip": f"10.0.{device // 250}.{device % 250 + 2}",
    }
    return _envelope(rng, "smokehouse.iot", "Telemetry Reading", detail)


def ec2_event(rng: random.Random) -> dict[str, Any]:
    instance = f"i-{rng.randint(1, N_INSTANCES):017x}"
    detail = {
        "instance-id": instance,
        "state": rng.choice(EC2_STATES),
        "instance-type": rng.choice(EC2_TYPES),
        "private-ip": f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
    }
    arn = f"arn:aws:ec2:{rng.choice(['us-east-1', 'eu-west-1'])}:123456789012:instance/{instance}"
    return _envelope(rng, "aws.ec2", "EC2 Instance State-change Notification", detail, [arn])


EVENT_MAKERS = [gitlab_event, gitlab_event, bbq_event, bbq_event, ec2_event]


def make_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    return [rng.choice(EVENT_MAKERS)(rng) for _ in range(n)]


# -- rules ----------------------------------------------------------------------------------
def _pick(rng: random.Random, values: list[Any], k: int = 2) -> list[Any]:
    return rng.sample(values, rng.randint(1, min(k, len(values))))


PROJECTS = list(range(1, N_PROJECTS + 1))
DEVICES = [f"pi-{d:03d}" for d in range(1, N_DEVICES + 1)]
INSTANCES = [f"i-{i:017x}" for i in range(1, N_INSTANCES + 1)]


def gitlab_conditions(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(selective conditions, broad conditions) on detail fields."""
    projects = PROJECTS
    selective = [
        {"project_id": _pick(rng, projects)},
        {"project_name": [f"group-{p % 40}/project-{p}" for p in _pick(rng, projects, 2)]},
        {
            "repository": {
                "homepage": [
                    {"wildcard": f"https://{GITLAB_HOST}/*/project-{rng.randint(1, N_PROJECTS)}"}
                ]
            }
        },
        {"user": {"email": [f"dev{rng.randint(1, N_USERS)}@example.com"]}},
    ]
    broad = [
        {"build_status": _pick(rng, JOB_STATUSES, 2)},
        {"build_status": [{"anything-but": _pick(rng, JOB_STATUSES, 3)}]},
        {"build_name": [{"prefix": rng.choice(["test:", "build:", "deploy:"])}]},
        {"build_name": [{"wildcard": rng.choice(["deploy:*", "*:unit", "build:*"])}]},
        {"build_name": [{"suffix": rng.choice([":prod", ":docs", ":integration"])}]},
        {"ref": [{"prefix": rng.choice(["release/", "hotfix/"])}]},
        {"ref": [{"anything-but": {"prefix": "feature/"}}]},
        {"build_duration": [{"numeric": [">", rng.choice([600, 1200, 3000])]}]},
        {"build_duration": [{"numeric": [">=", 0, "<", rng.choice([5, 30, 60])]}]},
        {"runner": {"tags": _pick(rng, RUNNER_TAGS, 2)}},
        {"environment": [{"exists": rng.random() < 0.5}]},
        {"environment": ["production"]},
        {"build_allow_failure": [False]},
        {"tag": [True]},
        {"$or": [{"build_status": ["failed"]}, {"build_duration": [{"numeric": [">", 1800]}]}]},
        {"user": {"email": [{"suffix": "@example.com"}]}},
        {"runner": {"description": [{"equals-ignore-case": f"RUNNER-{rng.randint(1, 50)}"}]}},
    ]
    return selective, broad


def bbq_conditions(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    devices = DEVICES
    selective = [
        {"device_id": _pick(rng, devices)},
        {"cook_id": [f"cook-{rng.randint(1, N_COOKS)}"]},
        {"ip": [{"cidr": f"10.0.{rng.randint(0, 11)}.{rng.randrange(0, 256, 4)}/30"}]},
    ]
    broad = [
        {"probes": {"temp_c": [{"numeric": [">", rng.choice([250, 280, 300])]}]}},
        {"probes": {"status": [rng.choice(["open", "short"])]}},
        {"probes": {"status": ["ok"], "temp_c": [{"numeric": [">=", 290]}]}},  # same element
        {"probes": {"id": ["probe-4"], "temp_c": [{"numeric": ["<", 20]}]}},
        {"battery_pct": [{"numeric": ["<", rng.choice([5, 10, 20])]}]},
        {"firmware": [{"anything-but": ["1.4.2"]}]},
        {"firmware": [{"anything-but": {"suffix": "-rc1"}}]},
        {"cook_id": [{"exists": False}]},
        {"cook_id": [None]},
        {"cook_id": [{"prefix": "cook-9"}]},
    ]
    return selective, broad


def ec2_conditions(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    instances = INSTANCES
    selective = [
        {"instance-id": _pick(rng, instances)},
        {"private-ip": [{"cidr": f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.0/28"}]},
    ]
    broad = [
        {"state": _pick(rng, EC2_STATES, 2)},
        {"state": [{"anything-but": ["running", "pending"]}]},
        {"instance-type": [{"prefix": rng.choice(["t3.", "g5.", "c7g."])}]},
        {"instance-type": [{"equals-ignore-case": rng.choice(EC2_TYPES).upper()}]},
        {"private-ip": [{"cidr": f"10.{rng.randint(0, 3)}.0.0/16"}]},
    ]
    return selective, broad


FAMILIES: list[
    tuple[str, str, Callable[[random.Random], tuple[list[dict[str, Any]], list[dict[str, Any]]]]]
] = [
    ("smokehouse.gitlab", "GitLab Job Hook", gitlab_conditions),
    ("smokehouse.iot", "Telemetry Reading", bbq_conditions),
    ("aws.ec2", "EC2 Instance State-change Notification", ec2_conditions),
]
EXTRA_SOURCES = [
    ("smokehouse.deploy", "Deployment"),
    ("aws.autoscaling", "EC2 Instance Launch Successful"),
    ("smokehouse.webhook", "GitHub Push"),
]


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Add ``extra``'s conditions; a field that already has one keeps it."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif key not in into:
            into[key] = value


def make_rule(rng: random.Random, broad_only: bool = False) -> dict[str, Any]:
    if not broad_only and rng.random() < 0.15:  # rules for sources no event carries
        source, detail_type = rng.choice(EXTRA_SOURCES)
        return {
            "source": [source],
            "detail-type": [detail_type],
            "detail": {"k": [f"v{rng.randint(1, 99)}"]},
        }
    source, detail_type, conditions = rng.choice(FAMILIES)
    selective, broad = conditions(rng)
    rule: dict[str, Any] = {}
    anchor = rng.random()
    if anchor < 0.80:
        rule["source"] = [source]
        rule["detail-type"] = [detail_type]
    elif anchor < 0.86:
        rule["source"] = [source]
    elif anchor < 0.90:
        rule["source"] = [{"prefix": source.split(".")[0] + "."}]
    elif anchor < 0.93:
        rule["source"] = [{"wildcard": "*." + source.split(".")[-1]}]
    elif anchor < 0.96:
        rule["detail-type"] = [{"equals-ignore-case": detail_type.upper()}]
    else:
        rule["$or"] = [{"source": [source]}, {"detail-type": [detail_type]}]
    detail: dict[str, Any] = {}
    if not broad_only:
        _merge(detail, rng.choice(selective))
    for extra in rng.sample(broad, rng.randint(0 if detail else 1, 2)):
        if "$or" in extra and "$or" in detail:
            continue
        _merge(detail, extra)
    if detail:
        rule["detail"] = detail
    if rng.random() < 0.05:
        rule["region"] = [{"anything-but": "us-west-2"}]
    return rule


def make_rules(rng: random.Random, n: int) -> dict[str, dict[str, Any]]:
    """``n`` rules: a fixed handful of broad ones (no selective field), the rest specific."""
    broad = set(rng.sample(range(n), max(1, min(n // 20, 25))))
    return {f"rule-{i:05d}": make_rule(rng, i in broad) for i in range(n)}


# -- measuring ------------------------------------------------------------------------------
def same_matches_rules(
    seed: int, n: int, events: list[dict[str, Any]], matching: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``n`` rules of which the ``matching`` ones are the only ones any event matches: the rest
    are drawn from the same realistic generator and kept only if no event matches them (the
    compiled matcher decides; it agrees with the reference loop, which the main run checks). So
    every event matches exactly as many rules at 10 as at 10,000: "flat in the number of rules"
    measured apart from "more rules genuinely match"."""
    rng = random.Random(seed)
    kept: dict[str, dict[str, Any]] = {}
    while len(kept) < n - len(matching):
        wanted = n - len(matching) - len(kept)
        batch = {f"quiet-{len(kept) + i:05d}-{seed}": make_rule(rng) for i in range(wanted * 2)}
        machine = RuleMatcher.build({rid: parse_pattern(r) for rid, r in batch.items()})
        hit = {rid for event in events for rid in machine.match(event)}
        for rid, rule in batch.items():
            if rid not in hit and len(kept) < n - len(matching):
                kept[f"quiet-{len(kept):05d}"] = rule
    return {**matching, **kept}


def events_per_second(
    fn: Callable[[dict[str, Any]], object], events: list[dict[str, Any]], repeats: int
) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for event in events:
            fn(event)
        best = min(best, time.perf_counter() - start)
    return len(events) / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--events", type=int, default=None, help="events per measurement")
    args = parser.parse_args(argv)

    n_events = args.events or (2000 if args.quick else 20000)
    repeats = 1 if args.quick else 3
    n_baseline = 3 if args.quick else 30
    events = make_events(random.Random(args.seed), n_events)
    result: dict[str, Any] = {"events": n_events, "seed": args.seed, "quick": args.quick}
    machines: dict[int, tuple[RuleMatcher[str], dict[str, Pattern], dict[str, dict[str, Any]]]] = {}

    for n in (10, 1000, 10000):
        raw = make_rules(random.Random(args.seed + n), n)
        start = time.perf_counter()
        patterns = {rid: parse_pattern(rule) for rid, rule in raw.items()}
        parse_s = time.perf_counter() - start
        start = time.perf_counter()
        machine = RuleMatcher.build(patterns)
        build_s = time.perf_counter() - start
        machine.match(events[0])  # warm up
        eps = events_per_second(machine.match, events, repeats)
        sample = events[: min(len(events), 2000)]
        avg = sum(len(machine.match(e)) for e in sample) / len(sample)
        hit = sum(1 for e in sample if machine.match(e)) / len(sample)
        print(
            f"{n:>6} rules: {eps:>10,.0f} events/s  (parse {parse_s:.2f} s, build {build_s:.2f} s,"
            f" {avg:.2f} matches/event, {hit:.0%} of events match a rule)"
        )
        result[f"rules_{n}_eps"] = round(eps)
        result[f"rules_{n}_build_s"] = round(build_s, 3)
        result[f"rules_{n}_parse_s"] = round(parse_s, 3)
        result[f"rules_{n}_matches_per_event"] = round(avg, 3)
        machines[n] = (machine, patterns, raw)

    # The same rules match at 10 and at 10,000: one per event family (source and detail-type,
    # as most real rules anchor), so every event matches exactly one rule at either size.
    matching = {
        f"family-{i}": {"source": [source], "detail-type": [detail_type]}
        for i, (source, detail_type, _) in enumerate(FAMILIES)
    }
    same: dict[int, float] = {}
    for n in (10, 10000):
        rules = same_matches_rules(args.seed + 1000 + n, n, events, matching)
        machine = RuleMatcher.build({rid: parse_pattern(r) for rid, r in rules.items()})
        machine.match(events[0])
        same[n] = events_per_second(machine.match, events, repeats)
        sample = events[: min(len(events), 2000)]
        matched = sorted(rid for e in sample for rid in machine.match(e))
        assert all(rid in matching for rid in matched), "a quiet rule matched"
        result[f"rules_{n}_same_matches_eps"] = round(same[n])
        result[f"rules_{n}_same_matches_per_event"] = round(len(matched) / len(sample), 3)
        print(
            f"{n:>6} rules, same matches: {same[n]:>10,.0f} events/s"
            f" ({len(matched) / len(sample):.2f} matches/event)"
        )
    result["same_matches_ratio_10000_vs_10"] = round(same[10000] / same[10], 3)
    print(f"same matches, 10,000 / 10 rules: {same[10000] / same[10]:.2f} (target >= 0.5)")

    machine, patterns, raw = machines[10000]
    baseline_events = events[:n_baseline]
    as_dicts = {rid: p.to_dict() for rid, p in patterns.items()}

    def loop_reference(event: dict[str, Any]) -> list[str]:
        return [rid for rid, p in as_dicts.items() if reference_matches(p, event)]

    def loop_matches(event: dict[str, Any]) -> list[str]:
        return [rid for rid, p in patterns.items() if matches(p, event)]

    loop_eps = events_per_second(loop_reference, baseline_events, 1)
    loop_matches_eps = events_per_second(loop_matches, baseline_events, 1)
    agree = all(machine.match(e) == loop_reference(e) for e in baseline_events)
    compiled = result["rules_10000_eps"]
    print(
        f"10,000 rules, rule-by-rule reference loop: {loop_eps:,.1f} events/s"
        f" ({len(baseline_events)} events); rule-by-rule matches(): {loop_matches_eps:,.1f}"
        " events/s"
    )
    print(
        f"compiled vs loop at 10,000 rules: {compiled / loop_eps:,.0f}x (reference),"
        f" {compiled / loop_matches_eps:,.0f}x (matches());"
        f" results identical on those events: {agree}"
    )
    print(f"10,000-rule throughput / 10-rule throughput: {compiled / result['rules_10_eps']:.2f}")
    result["loop_10000_eps"] = round(loop_eps, 2)
    result["loop_matches_10000_eps"] = round(loop_matches_eps, 2)
    result["speedup_10000"] = round(result["rules_10000_eps"] / loop_eps, 1)
    result["ratio_10000_vs_10"] = round(result["rules_10000_eps"] / result["rules_10_eps"], 3)
    result["loop_agrees"] = agree
    result["rss_mb"] = tree_rss_mb(os.getpid(), children=False)  # every matcher above still held
    print(json.dumps(result))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
