"""The soak's invariants and figures, computed from what a run recorded (results.json's `raw`).

Every check reads only the records, so `benches/soak/run --recheck DIR` evaluates a finished
run again, and a record changed by hand shows that a check can fail.
"""

import json
import os
import re
from collections import Counter, defaultdict
from datetime import datetime

LOAD_ROUTES = ("/start-checkout", "/checkout/{merchant_transaction_id}",
               "/checkout/{merchant_transaction_id}/events", "/kyc-status")
METRIC_LINE = re.compile(r'^proof_bff_requests_total\{(.*)\} (\d+(?:\.\d+)?)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
TERMINAL = ("completed", "failed", "cancelled")
# Whatever Proof itself answers with 4xx is relayed as it came (openapi.yaml's `4XX`); the load
# only sends checkouts the stand-in accepts, so none is expected, but none would be a defect.
PROOF_4XX = "4XX"
# The half-request burst's connections: their heads never complete, so there is no route and no
# request yet. openapi.yaml and docs/configuration.md document the answer in words: a bare 408,
# no body, counted by no metric.
BURST_ROUTE = "(an incomplete request head)"


def documented_answers(openapi_path: str) -> dict[tuple[str, int], set[str] | None]:
    """(route, status) -> the documented `code`s of its error envelope (None: any, or no
    envelope), read from openapi.yaml: the one list the service, its tests and this check share."""
    try:
        import yaml
    except ImportError:
        raise SystemExit("the soak reads openapi.yaml with PyYAML: python3 -m pip install pyyaml "
                         "(.ci/run installs it with schemathesis)")
    with open(openapi_path) as f:
        spec = yaml.safe_load(f)

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            target = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    def codes(node) -> set[str] | None:
        """The codes a schema allows: allOf narrows, anyOf/oneOf widens; None: no `code`.
        Proof's own envelope (`ProofError`, relayed as it came) adds none: the load sends
        nothing Proof refuses, so every error it sees must be one of the service's own."""
        if isinstance(node, dict) and node.get("$ref", "").endswith("/ProofError"):
            return set()
        node = resolve(node)
        found = None
        code = node.get("properties", {}).get("code")
        if code:
            code = resolve(code)
            found = ({code["const"]} if "const" in code else set()) | set(code.get("enum", []))
        for part in node.get("allOf", []):
            narrowed = codes(part)
            if narrowed is not None:
                found = narrowed if found is None else found & narrowed
        alternatives = [codes(part) for part in node.get("anyOf", []) + node.get("oneOf", [])]
        if alternatives:
            widened = set().union(*(a for a in alternatives if a is not None))
            found = widened if found is None else found & widened
        return found

    documented = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, answer in operation["responses"].items():
                answer = resolve(answer)
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                key = (f"{method.upper()} {path}", status)
                documented[key] = codes(schema) if schema else None
    return documented


def route_key(route: str) -> str:
    method = "POST" if route == "/start-checkout" else "GET"
    return f"{method} {route}"


def windows_of(faults: list[dict], kind: str | None = None, grace: float = 0.0):
    return [(f["start"], f["end"] + grace, f) for f in faults if kind is None or f["kind"] == kind]


def within(t: float, windows) -> dict | None:
    for start, end, fault in windows:
        if start <= t <= end:
            return fault
    return None


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            labels = dict(LABEL.findall(match.group(1)))
            counts[(labels.get("route", ""), labels.get("status", ""))] += float(match.group(2))
    return counts


def log_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def evaluate(raw: dict, openapi_path: str) -> tuple[list[dict], dict]:
    """The invariants (name, PASS/FAIL, detail) and the figures, from a run's records."""
    faults = raw["faults"]
    answers = raw["answers"]
    grace = raw["settings"]["grace_s"]
    restarts = windows_of(faults, "replica restart", grace)
    checks = []

    def check(name: str, ok: bool, detail: str):
        checks.append({"invariant": name, "result": "PASS" if ok else "FAIL", "detail": detail})

    # 1. Every answer a documented status with a documented code; refusals only in a restart.
    documented = documented_answers(openapi_path)
    undocumented = Counter()
    stray_failures = Counter()
    for a in answers:
        if a["outcome"] in ("refused", "reset", "closed", "timeout"):
            fault = within(a["t"], restarts)
            if fault is None or fault["replica"] != a["replica"]:
                if not (a["outcome"] == "timeout" and a["route"].endswith("/events")):
                    stray_failures[f'{a["route"]} {a["outcome"]}'] += 1
            continue
        if a["status"] is None:
            continue  # dropped by the client, or cut when the load stopped
        status = str(a["status"])
        if a["route"] == BURST_ROUTE:
            if a["status"] != 408 or a["code"] is not None:
                undocumented[f'{a["route"]} {status} {a["code"]}'] += 1
            continue
        key = route_key(a["route"])
        allowed = documented.get((key, status), documented.get((key, PROOF_4XX), set())
                                  if 400 <= a["status"] < 500 else set())
        if (key, status) not in documented and not 400 <= a["status"] < 500:
            undocumented[f'{a["route"]} {status} {a["code"]}'] += 1
        elif allowed is not None and a["status"] >= 400 and a["code"] not in allowed:
            undocumented[f'{a["route"]} {status} {a["code"]}'] += 1
    known = sum(1 for a in answers if a["status"] is not None)
    detail = f"{known} answers"
    if undocumented:
        detail += "; undocumented: " + ", ".join(f"{k} ×{n}" for k, n in undocumented.most_common(5))
    if stray_failures:
        detail += "; connection failures outside a restart: " + ", ".join(
            f"{k} ×{n}" for k, n in stray_failures.most_common(5))
    check("every answer a documented status and code (no 500); refusals only during a restart",
          not undocumented and not stray_failures, detail)

    # 2. Proof never created two sessions for one user's Idempotency-Key.
    redis_windows = windows_of(faults, "redis stopped", grace)
    calls = defaultdict(list)
    for s in raw["proof_sessions"]:
        intent = raw["intents"].get(s["amount"] or "")
        if intent and intent["key"] is not None:
            calls[(intent["user"], intent["key"])].append(s)
    duplicates, excused = [], 0
    storable = lambda s: s["answered"] is not None and (s["answered"] == 200 or (
        400 <= s["answered"] < 500 and s["answered"] != 429))
    for key, sessions in calls.items():
        by_request = {}
        for s in sorted(sessions, key=lambda s: s["t"]):
            by_request.setdefault(s["request_id"], []).append(s)
        if len(by_request) < 2:
            continue
        # A later request after an answer the replica could keep, or two kept answers.
        firsts = sorted(by_request.values(), key=lambda attempts: attempts[0]["t"])
        for earlier_index, earlier in enumerate(firsts):
            answered = [s for s in earlier if storable(s)]
            if not answered:
                continue
            for later in firsts[earlier_index + 1:]:
                if later[0]["t"] >= answered[0]["t_end"] or any(storable(s) for s in later):
                    if within(answered[0]["t_end"], redis_windows):
                        excused += 1  # the answer came while Redis was down: it could not be kept
                    else:
                        duplicates.append(key)
    check("Proof never got two POST /widget/session for one user's Idempotency-Key",
          not duplicates,
          f"{len(calls)} keys reached Proof; duplicated: {len(duplicates)}"
          + (f" (first: {duplicates[0]})" if duplicates else "")
          + f"; kept answers lost to a Redis outage: {excused}")

    # 3. Per-user limit: Proof's sessions per user within burst + rate x run time (+ the outage
    # allowance: none with on_backend_error = "deny").
    settings = raw["settings"]
    run_s = raw["ended"] - raw["started"]
    allowance = settings["per_user_burst"] + int(settings["per_user_per_minute"] * run_s / 60) + 1
    per_user = defaultdict(set)
    for s in raw["proof_sessions"]:
        if settings["on_backend_error"] == "allow" and within(s["t"], redis_windows):
            continue  # served unprotected while Redis was down, as documented for "allow"
        per_user[s["user"]].add(s["request_id"])
    over = {u: len(r) for u, r in per_user.items() if len(r) > allowance}
    busiest = max(((len(r), u) for u, r in per_user.items()), default=(0, "-"))
    check("no user past the per-user limit (burst + rate × run time; Redis outage allowance: "
          + ("none, on_backend_error = deny)" if settings["on_backend_error"] == "deny"
             else "unlimited during the outage, on_backend_error = allow)"),
          not over, f"allowed {allowance} per user; busiest {busiest[1]}: {busiest[0]}"
          + (f"; over: {over}" if over else ""))

    # 4. Every stream that ended got its final status or a documented end.
    bad_ends = Counter()
    ends = Counter()
    for s in raw["streams"]:
        ends[s["end"]] += 1
        if s["end"] in ("final", "204", "client") or s["end"] is None:
            continue
        fault = within(s["t_end"], restarts)
        if s["end"] == "eof" and fault is not None and fault["replica"] == s["replica"]:
            continue  # a drain ends streams so that EventSource reconnects
        bad_ends[s["end"]] += 1
    check("every event stream that ended got a final status, 204, or a drain's end",
          not bad_ends, ", ".join(f"{k}: {n}" for k, n in sorted(ends.items(), key=str))
          + (f"; unexplained ends: {dict(bad_ends)}" if bad_ends else ""))

    # 5. Memory and file descriptors flat.
    figures = {"resources": resources(raw)}
    grown = []
    for row in figures["resources"]["flatness"]:
        for what, limit_extra in (("rss_kib", 2048), ("fds", 8)):
            base, last = row[what]
            if base and last > base * 1.10 + limit_extra:
                grown.append(f'replica {row["replica"]} {what} {base:.0f} -> {last:.0f}')
    check("resident memory and open fds flat (last tenth within 10 % of the second tenth)",
          not grown and bool(figures["resources"]["flatness"]),
          "; ".join(f'replica {r["replica"]}: RSS {r["rss_kib"][0] / 1024:.1f} -> '
                    f'{r["rss_kib"][1] / 1024:.1f} MiB, fds {r["fds"][0]:.0f} -> {r["fds"][1]:.0f}'
                    for r in figures["resources"]["flatness"]) + ("; grown: " + ", ".join(grown) if grown else ""))

    # 6. Metrics counters against the load's tally.
    mismatches, compared = metrics_against_tally(raw)
    check("metrics request counters equal the load's tally per route and status (± unknown outcomes)",
          not mismatches and compared > 0, f"{compared} (route, status) pairs compared"
          + ("; " + "; ".join(mismatches[:4]) if mismatches else ""))

    # 7. Logs: no panic, no error line outside a fault's window.
    explained, unexplained, panics = Counter(), [], []
    all_windows = windows_of(faults, None, grace)
    for line in raw["log_errors"]:
        if line["panic"]:
            panics.append(line["text"][:160])
            continue
        fault = within(line["t"] or 0, all_windows)
        if fault is None:
            unexplained.append(line["text"][:200])
        else:
            explained[fault["kind"]] += 1
    check("no panic, no error-level log line the fault schedule does not explain",
          not panics and not unexplained,
          f"explained: {dict(explained) or 0}"
          + (f"; unexplained ({len(unexplained)}): {unexplained[0]}" if unexplained else "")
          + (f"; panics: {panics[0]}" if panics else ""))

    # 8. Each fault recovered from before the end.
    figures["faults"] = fault_figures(raw)
    unrecovered = [f'{f["kind"]} at {f["start_s"]:.0f} s' for f in figures["faults"] if f["recovery_s"] is None]
    check("every fault recovered from (each replica answered a checkout 200 after it) before the end",
          not unrecovered, f"{len(figures['faults'])} faults"
          + (f"; not recovered: {', '.join(unrecovered)}" if unrecovered else ""))

    figures["totals"] = totals(raw)
    return checks, figures


def metrics_against_tally(raw: dict) -> tuple[list[str], int]:
    """Compares, per route and status, the counters of every replica process (its last scrape)
    with the load's answers; each route may differ by its answers of unknown status (dropped by
    the client, cut, reset) and by the answers a restarted process gave after its last scrape."""
    scraped: dict[tuple[str, str], float] = defaultdict(float)
    last_scrape = {}
    for process, scrape in raw["last_scrapes"].items():
        last_scrape[process] = scrape["t"]
        for key, value in parse_metrics(scrape["text"]).items():
            scraped[key] += value
    tally: dict[tuple[str, str], int] = Counter()
    slack: dict[str, int] = Counter()
    for a in raw["answers"]:
        process = f'{a["replica"]}.{a["gen"]}'
        if a["status"] is None:
            if a["outcome"] != "refused":
                slack[a["route"]] += 1
            continue
        if process not in last_scrape or (a["t_end"] or 0) > last_scrape[process]:
            slack[a["route"]] += 1
            continue
        tally[(a["route"], str(a["status"]))] += 1
    mismatches, compared = [], 0
    for route in LOAD_ROUTES:
        statuses = {s for r, s in list(tally) + list(scraped) if r == route}
        for status in sorted(statuses):
            compared += 1
            counted, seen = scraped.get((route, status), 0), tally.get((route, status), 0)
            if abs(counted - seen) > slack[route]:
                mismatches.append(f"{route} {status}: metrics {counted:.0f}, load {seen} (± {slack[route]})")
    return mismatches, compared


def resources(raw: dict) -> dict:
    """RSS and fds per replica over time, and the flatness comparison: the mean of the last tenth
    of the run against the second tenth, both without the samples taken during a fault (and its
    grace), when connections held open by the fault are counted. For a process started during
    the run (a restart), the baseline is its own samples outside faults before the last tenth."""
    started, ended = raw["started"], raw["ended"]
    tenth = (ended - started) / 10
    quiet = lambda s: within(s["t"], windows_of(raw["faults"], None, raw["settings"]["grace_s"])) is None
    flatness, timeline = [], []
    for replica in sorted({s["replica"] for s in raw["samples"]}):
        samples = [s for s in raw["samples"] if s["replica"] == replica]
        last_gen = max(s["gen"] for s in samples)
        final = [s for s in samples if s["gen"] == last_gen]
        if last_gen == 0:
            base = [s for s in final if started + tenth <= s["t"] < started + 2 * tenth]
        else:
            base = [s for s in final if s["t"] < ended - tenth]
        base = [s for s in base if quiet(s)] or base
        last = [s for s in final if s["t"] >= ended - tenth]
        last = [s for s in last if quiet(s)] or last
        mean = lambda rows, k: sum(r[k] for r in rows) / len(rows) if rows else 0
        flatness.append({"replica": replica, "generation": last_gen,
                         "rss_kib": (mean(base, "rss_kib"), mean(last, "rss_kib")),
                         "fds": (mean(base, "fds"), mean(last, "fds"))})
        for i in range(10):
            rows = [s for s in samples if started + i * tenth <= s["t"] < started + (i + 1) * tenth]
            if rows:
                timeline.append({"replica": replica, "tenth": i + 1,
                                 "rss_mib": max(r["rss_kib"] for r in rows) / 1024,
                                 "fds": max(r["fds"] for r in rows)})
    return {"flatness": flatness, "timeline": timeline}


def fault_figures(raw: dict) -> list[dict]:
    """Per fault: the answers during it by status and code, and the recovery time: from its end
    until every replica (for a restart: the one restarted) has answered 200 to a checkout sent
    after the end."""
    rows = []
    for fault in raw["faults"]:
        during = Counter()
        for a in raw["answers"]:
            if fault["start"] <= a["t"] <= fault["end"]:
                label = str(a["status"]) if a["status"] is not None else a["outcome"]
                if a["code"]:
                    label += f' {a["code"]}'
                during[label] += 1
        # Every replica must be back: one that never answers 200 again has not recovered, even
        # while the other serves.
        replicas = ([fault["replica"]] if fault.get("replica") is not None
                    else sorted({a["replica"] for a in raw["answers"]}))
        firsts = []
        for replica in replicas:
            served = [a["t_end"] for a in raw["answers"]
                      if a["route"] == "/start-checkout" and a["status"] == 200
                      and a["t"] >= fault["end"] and a["replica"] == replica]
            firsts.append(min(served) if served else None)
        recovered = None if None in firsts or not firsts else max(firsts)
        rows.append({
            "kind": fault["kind"], "detail": fault.get("detail", ""),
            "start_s": fault["start"] - raw["started"], "duration_s": fault["end"] - fault["start"],
            "answers": sum(during.values()),
            "errors": {k: n for k, n in during.items() if not k.startswith("2")},
            "recovery_s": (recovered - fault["end"]) if recovered is not None else None,
        })
    return rows


def totals(raw: dict) -> dict:
    by = Counter()
    for a in raw["answers"]:
        label = str(a["status"]) if a["status"] is not None else a["outcome"]
        by[f'{a["route"]}\t{label}{" " + a["code"] if a["code"] else ""}'] += 1
    return {"requests": len(raw["answers"]), "proof_sessions": len(raw["proof_sessions"]),
            "streams": len(raw["streams"]), "by_route_status": dict(sorted(by.items()))}


def markdown(checks: list[dict], figures: dict, raw: dict) -> str:
    out = []
    run_s = raw["ended"] - raw["started"]
    t = figures["totals"]
    out.append(f"Run: {run_s / 60:.1f} minutes, binary {raw['settings']['binary']}, "
               f"{t['requests']} requests, {t['streams']} event streams, "
               f"{t['proof_sessions']} POST /widget/session at Proof.\n")
    out.append("| invariant | result | detail |\n|---|---|---|")
    for c in checks:
        out.append(f"| {c['invariant']} | {c['result']} | {c['detail'].replace('|', '/')} |")
    out.append("\n| fault | at | lasted | answers during it | errors during it (status code ×n) | recovery |\n|---|---|---|---|---|---|")
    for f in figures["faults"]:
        errors = ", ".join(f"{k} ×{n}" for k, n in sorted(f["errors"].items())) or "none"
        recovery = f"{f['recovery_s']:.1f} s" if f["recovery_s"] is not None else "not recovered"
        out.append(f"| {f['kind']} {f['detail']} | {f['start_s']:.0f} s | {f['duration_s']:.1f} s | "
                   f"{f['answers']} | {errors} | {recovery} |")
    out.append("\n| replica | tenth of the run | peak RSS | peak open fds |\n|---|---|---|---|")
    for row in figures["resources"]["timeline"]:
        out.append(f"| {row['replica']} | {row['tenth']} | {row['rss_mib']:.1f} MiB | {row['fds']} |")
    out.append("\n| route | outcome | count |\n|---|---|---|")
    for key, n in t["by_route_status"].items():
        route, outcome = key.split("\t", 1)
        out.append(f"| {route} | {outcome} | {n} |")
    return "\n".join(out)


def load_raw(out_dir: str) -> dict:
    with open(os.path.join(out_dir, "results.json")) as f:
        return json.load(f)["raw"]
