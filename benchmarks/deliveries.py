"""Drone delivery benchmark: ``python -m benchmarks.deliveries`` (part of ``make bench``).

Starts the whole local stack (Azurite, both emulators, devhost; in memory), seeds a fleet big
enough that drones are not the bottleneck, subscribes a webhook of its own to the Event Grid
topic for ``DeliveryShipped``, then runs two kinds of scenario, each on a fresh stack of its
own (every delivery leaves a join timeout that fires, as a no-op, five minutes later; a
scenario must not pay for another's):

* **throughput** (closed loop): N deliveries submitted over HTTP by C concurrent clients as fast
  as the stack answers. deliveries/s = N / (first submission -> last ``Shipped``). The latencies
  of this scenario measure the backlog it builds, not the choreography.
* **latency at a rate** (open loop): deliveries submitted on a fixed schedule (R per second for
  a number of seconds), whatever the stack does. p50/p99 from the ``202 Accepted`` of each
  delivery to the arrival of its ``DeliveryShipped`` event at the webhook (the end of the
  choreography as a downstream consumer sees it). Run at the target rate and at a rate below
  the measured throughput.

Before each scenario, 20 deliveries warm the fresh stack up (not measured).

``--instances 2`` runs a second devhost on the same resources (Azure's scale-out: competing
Service Bus consumers); submissions alternate between the instances' HTTP fronts. Every
process's CPU time is read from ``/proc`` at the end, so the CPU cost of a delivery is part
of the result.

**What tracing costs**: the same open-loop load (``--tracing-deliveries`` at ``--tracing-rate``) on
fresh stacks: tracing off (``OTEL_SDK_DISABLED=true``, what a stack without its trace store sets),
spans made and dropped (no-op exporter), and exported to the stack's trace store (with and
without the SDK-call spans); CPU per delivery and its ratio to tracing off.

**Against the floor** (issue 15): ``benchmarks/floor.py`` runs first, in the same run, on a fresh
stack of its own: the operations the choreography needs per delivery, with the same SDKs and
emulators and no project code. The project's open-loop run at the floor's rate (tracing off),
on a fresh stack right after it, is compared with it per process (devhost with the floor's
client process) and in total, as ratios; the two take turns ``--floor-repeats`` times and the
median pair is shown. The operations the project does per delivery are counted on one more fresh stack
with the trace store (each SDK call is a span there: sends, receives, completes, Table calls by
kind, Event Grid publishes).

Results: ``benchmarks/results/deliveries.json`` and ``.md`` (``--only-tracing``: ``tracing.json``, ``.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web  # noqa: E402

from benchmarks.floor import OPERATIONS, run_floor  # noqa: E402
from devstack.stack import Stack, free_port  # noqa: E402
from ops.sources import StoreApi  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET_PER_S, TARGET_P99_MS = 40, 250  # issue 15: what the floor allows on 2 cores (p99 at 30/s offered)
WARM_UP = 20  # deliveries shipped before each scenario's measurement starts
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def body(delivery_id: str, i: int) -> dict[str, Any]:
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    size, weight = [("small", 2.0), ("medium", 9.0), ("large", 30.0)][i % 3]
    return {"deliveryId": delivery_id, "ownerId": "bench", "pickupLocation": "A", "dropoffLocation": "B",
            "deadline": deadline.isoformat().replace("+00:00", "Z"), "expedited": False,
            "confirmationRequired": False,
            "packageInfo": {"packageId": f"p-{delivery_id}", "size": size, "weight": weight, "tag": "bench"}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and of its waited-for children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, max(0, int(len(values) * fraction + 0.5) - 1))], 1)


class Watcher:
    """The benchmark's own Event Grid subscriber: when did each delivery's ``DeliveryShipped`` arrive."""

    def __init__(self) -> None:
        self.shipped: dict[str, float] = {}
        self._waiting: tuple[set[str], asyncio.Event] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, stack: Stack) -> None:
        app = web.Application()
        app.router.add_route("*", "/events", self._on_event)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        # The subscription handshake calls back into this loop's webhook, so the PUT must not block it.
        async with ClientSession() as http:
            async with http.put(f"{stack.eventgrid_url}/topics/deliveries/subscriptions/bench",
                                json={"endpoint": f"http://127.0.0.1:{port}/events",
                                      "includedEventTypes": ["DeliveryShipped"]}) as resp:
                if resp.status not in (200, 201):
                    raise RuntimeError(f"cannot subscribe the benchmark webhook: {resp.status} {await resp.text()}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _on_event(self, request: web.Request) -> web.Response:
        if request.method == "OPTIONS":  # CloudEvents abuse-protection handshake
            return web.Response(headers={"WebHook-Allowed-Origin": request.headers.get("WebHook-Request-Origin", "*")})
        now = time.perf_counter()
        payload = await request.json()
        for event in payload if isinstance(payload, list) else [payload]:
            data = event.get("data") or {}
            delivery_id = data.get("deliveryId") or str(event.get("subject", "")).rsplit("/", 1)[-1]
            self.shipped.setdefault(delivery_id, now)
        if self._waiting and self._waiting[0] <= self.shipped.keys():
            self._waiting[1].set()
        return web.Response(status=200)

    async def wait_for(self, ids: set[str], timeout: float) -> None:
        done = asyncio.Event()
        self._waiting = (ids, done)
        if ids <= self.shipped.keys():
            return
        try:
            await asyncio.wait_for(done.wait(), timeout=timeout)
        except TimeoutError:
            pass


async def scenario(stack: Stack, urls: list[str], watcher: Watcher, total: int, concurrency: int,
                   rate: float | None) -> dict[str, Any]:
    """Submit ``total`` deliveries (at ``rate`` per second, or as fast as possible) and wait for them."""
    accepted: dict[str, float] = {}
    ids = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(total)]
    front = itertools.cycle(urls)
    semaphore = asyncio.Semaphore(concurrency)
    pids = {name: proc.pid for name, proc in stack.processes.items() if proc.pid}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    async with ClientSession(connector=TCPConnector(limit=concurrency), timeout=ClientTimeout(total=120)) as http:
        async def submit(i: int, delivery_id: str, url: str) -> None:
            if rate is not None:
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            async with semaphore:
                async with http.post(f"{url}/api/deliveries", json=body(delivery_id, i)) as resp:
                    await resp.read()
                    if resp.status != 202:
                        raise RuntimeError(f"submission answered {resp.status}")
                    accepted[delivery_id] = time.perf_counter()

        started = time.perf_counter()
        await asyncio.gather(*(submit(i, d, next(front)) for i, d in enumerate(ids)))
        submitted = time.perf_counter()
        await watcher.wait_for(set(ids), timeout=max(300, total / 5))
    cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 1) for name, pid in pids.items()}
    latencies = sorted((watcher.shipped[d] - accepted[d]) * 1000 for d in ids
                       if d in watcher.shipped and d in accepted)
    finished = max((watcher.shipped[d] for d in ids if d in watcher.shipped), default=time.perf_counter())
    return {
        "deliveries": total, "shipped": len(latencies), "concurrency": concurrency, "offered_per_s": rate,
        "submit_per_s": round(total / (submitted - started), 1),
        "deliveries_per_s": round(len(latencies) / (finished - started), 1),
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": percentile(latencies, 0.99),
        "cpu_s": cpu,
        "cpu_ms_per_delivery": round(sum(cpu.values()) * 1000 / max(1, len(latencies)), 1),
    }


async def run(stack: Stack, urls: list[str], total: int, concurrency: int, rate: float | None,
              count_operations: bool = False) -> dict[str, Any]:
    watcher = Watcher()
    await watcher.start(stack)
    try:
        # Warm-up, not measured: connections, sender links and caches of a fresh host.
        await scenario(stack, urls, watcher, WARM_UP, WARM_UP, None)
        since = time.time_ns()
        broker = stack.processes["servicebus"]
        broker_lines = broker.lines_seen
        result = await scenario(stack, urls, watcher, total, concurrency, rate)
        if count_operations:
            await asyncio.sleep(2)  # the last spans leave the host in batches
            counted = operations(StoreApi(stack.traces_url).spans(2_000_000), since, result["shipped"])
            accepts = sum(SESSION_ACCEPT in line for line in broker.lines_after(broker_lines))
            result["operations_per_delivery"] = {**counted,
                                                 "session accepts": round(accepts / max(1, result["shipped"]), 2)}
        return result
    finally:
        await watcher.stop()


# Each SDK call is one span in the trace store (azure-core's OpenTelemetry plugin, one span per call).
SPAN_OPERATIONS = {
    "servicebus sends": {"ServiceBus.send"},
    "servicebus receives": {"ServiceBus.receive"},
    "servicebus completes": {"ServiceBus.complete"},
    "eventgrid publishes": {"EventGridPublisherClientOperationsMixin.send"},
    "table writes": {"TableClient.create_entity", "TableClient.update_entity", "TableClient.upsert_entity",
                     "TableClient.delete_entity", "TableClient.submit_transaction"},
    "table reads": {"TableClient.get_entity", "TableClient.query_entities", "TableClient.list_entities"},
    "blob listings (the blob trigger's scan)": {"ContainerClient.list_blobs"},
}


# A session accept is no span: the emulator, at --log-level info, prints a line for each.
SESSION_ACCEPT = "locked by a receiver"


def operations(spans: list[Any], since_ns: int, deliveries: int) -> dict[str, float]:
    """SDK calls per delivery, by kind, from the spans that started after ``since_ns``, and the
    invocations of the session-triggered function (every message the join needs or receives
    for nothing)."""
    counted = {kind: 0 for kind in SPAN_OPERATIONS}
    by_name = {name: kind for kind, names in SPAN_OPERATIONS.items() for name in names}
    invocations = 0
    for span in spans:
        if span.startNs < since_ns:
            continue
        kind = by_name.get(span.name)
        if kind:
            counted[kind] += 1
        if span.attributes.get("faas.name") == "delivery_on_event":
            invocations += 1
    result = {kind: round(n / max(1, deliveries), 2) for kind, n in counted.items()}
    result["delivery_on_event invocations"] = round(invocations / max(1, deliveries), 2)
    return result


# What tracing costs (issue 11): the same open-loop load with tracing off (the OpenTelemetry API's
# no-op tracer), with spans made and dropped (the SDK with a no-op exporter), and exported over OTLP
# to the stack's trace store.
TRACING_MODES = {
    "off": ({}, False),
    "no-op exporter": ({"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "false"}, False),
    "trace store": ({}, True),
    "trace store, no SDK-call spans": ({"AZURE_TRACING_ENABLED": "false"}, True),
}


def on_a_fresh_stack(args: argparse.Namespace, total: int, concurrency: int, rate: float | None,
                     tracing: str = "trace store", count_operations: bool = False) -> dict[str, Any]:
    """One scenario on a stack of its own, so no scenario pays for another's leftovers (every
    delivery leaves a join timeout that fires, as a no-op, five minutes later)."""
    extra, with_traces = TRACING_MODES[tracing]
    settings = {"FLIGHT_TIME_SECONDS": "0", "PYTHON_THREADPOOL_THREAD_COUNT": str(args.threads), **extra}
    with Stack(with_devhost=False, settings=settings, with_traces=with_traces,
               servicebus_log_level="info" if count_operations else "warning") as stack:
        subprocess.run([sys.executable, "-m", "drone_scheduler.seed", "--connection", stack.storage_connection,
                        "--fleet-size", str(args.fleet_size)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        stack.start_devhost()
        # One blob-trigger scanner, as Azure runs one across instances (a singleton).
        urls = [stack.functions_url] + [
            stack.start_instance(n, {"AzureWebJobs.file_pipeline_validate.Disabled": "true"})
            for n in range(2, args.instances + 1)]
        return asyncio.run(run(stack, urls, total, concurrency, rate, count_operations))


def floor(args: argparse.Namespace) -> dict[str, Any]:
    with Stack(with_devhost=False, with_traces=False) as stack:
        return run_floor(stack, args.floor_deliveries, args.floor_rate)


def against_floor_interleaved(args: argparse.Namespace) -> dict[str, Any]:
    """The floor and the project's run at the floor's rate, ``--floor-repeats`` times in turn, so
    a drift of the machine (its speed moves by half within an hour) hits both alike; the pair
    with the median total ratio is the one shown, every pair's total ratio beside it."""
    pairs = []
    for _ in range(args.floor_repeats):
        floor_result = floor(args)
        project = on_a_fresh_stack(args, max(1, int(args.floor_rate * args.rate_seconds)), max(args.concurrency, 64),
                                   args.floor_rate, "off")
        pairs.append((floor_result, project, against_floor(floor_result, project)))
    ordered = sorted(pairs, key=lambda pair: pair[2]["total"]["ratio"])
    floor_result, project, rows = ordered[(len(ordered) - 1) // 2]
    return {"floor": floor_result, "project": project, "cpu_against_floor": rows,
            "compared_scenario": f"{args.floor_rate:g}/s for {args.rate_seconds:g} s",
            "total_ratio_runs": [pair[2]["total"]["ratio"] for pair in pairs]}


def against_floor(floor_result: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
    """CPU ms per delivery per process, the project's over the floor's (devhost against the
    floor's client process)."""
    shipped = max(1, project["shipped"])
    mine = {name: float(seconds) * 1000 / shipped for name, seconds in project["cpu_s"].items()}
    pairs = {"devhost": "client", "servicebus": "servicebus", "azurite": "azurite", "eventgrid": "eventgrid"}
    rows = {}
    for name, floor_name in pairs.items():
        base = floor_result["cpu_ms_per_delivery"].get(floor_name)
        if name in mine and base:
            rows[name] = {"project_ms": round(mine[name], 1), "floor_ms": base, "ratio": round(mine[name] / base, 2)}
    total = sum(mine.get(n, 0.0) for n in pairs)
    base_total = sum(floor_result["cpu_ms_per_delivery"].values())
    rows["total"] = {"project_ms": round(total, 1), "floor_ms": round(base_total, 1),
                     "ratio": round(total / base_total, 2)}
    return rows


def tracing_cost(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each tracing mode ``--tracing-repeats`` times, interleaved (off, no-op, store, off, ...) so a
    drift of the machine hits every mode alike; per mode the run with the median CPU per delivery."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in TRACING_MODES}
    for _ in range(args.tracing_repeats):
        for mode in TRACING_MODES:
            runs[mode].append(on_a_fresh_stack(args, args.tracing_deliveries, max(args.concurrency, 64),
                                               args.tracing_rate, mode))
    results = []
    for mode, done in runs.items():
        ordered = sorted(done, key=lambda r: r["cpu_ms_per_delivery"])
        median = ordered[(len(ordered) - 1) // 2]
        results.append({"scenario": f"tracing {mode}", **median,
                        "cpu_ms_per_delivery_runs": [r["cpu_ms_per_delivery"] for r in done]})
    return results


def devhost_ms(result: dict[str, Any]) -> float:
    return round(float(result["cpu_s"].get("devhost", 0.0)) * 1000 / max(1, result["shipped"]), 1)


def markdown(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = [
        "# Drone delivery benchmark", "",
        f"{meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}, whole local stack in memory "
        f"(Azurite, Service Bus and Event Grid emulators, {meta['instances']} devhost instance(s), "
        f"PYTHON_THREADPOOL_THREAD_COUNT={meta['threads']}), fleet of {meta['fleet_size']}, flight time 0 s.",
        f"Target: at least {TARGET_PER_S} deliveries/s with p99 under {TARGET_P99_MS} ms.", "",
        "| scenario | deliveries | shipped | submissions/s | deliveries/s (first submit → last Shipped) "
        "| p50 ms (202 → Shipped) | p99 ms | CPU ms per delivery (all processes) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(f"| {r['scenario']} | {r['deliveries']} | {r['shipped']} | {r['submit_per_s']} | "
                 f"{r['deliveries_per_s']} | {r['latency_p50_ms']} | {r['latency_p99_ms']} | "
                 f"{r['cpu_ms_per_delivery']} |" for r in results)
    costs = [r for r in results if r["scenario"].startswith("tracing ")]
    if costs:
        off = next(r for r in costs if r["scenario"] == "tracing off")
        lines += ["", "What tracing costs (the same open-loop load on fresh stacks, modes interleaved; per mode the "
                  "run with the median CPU per delivery; ratios to tracing off in the same run):", "",
                  "| tracing | CPU ms per delivery, all processes (every run) | median | ratio "
                  "| devhost CPU ms per delivery | ratio | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|---|"]
        lines.extend(f"| {r['scenario'].removeprefix('tracing ')} | {r.get('cpu_ms_per_delivery_runs', '')} | "
                     f"{r['cpu_ms_per_delivery']} | {r['cpu_ms_per_delivery'] / off['cpu_ms_per_delivery']:.3f} | "
                     f"{devhost_ms(r)} | {devhost_ms(r) / devhost_ms(off):.3f} | {r['latency_p50_ms']} | "
                     f"{r['latency_p99_ms']} |" for r in costs)
    lines += ["", "CPU seconds per process and scenario:", ""]
    names = sorted({name for r in results for name in r["cpu_s"]})
    lines += ["| scenario | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in results:
        lines.append(f"| {r['scenario']} | " + " | ".join(str(r["cpu_s"].get(n, "")) for n in names) + " |")
    return "\n".join(lines) + "\n"


def floor_markdown(comparison: dict[str, Any]) -> str:
    if not comparison:
        return ""
    lines = []
    if "cpu_against_floor" in comparison:
        floor_result = comparison["floor"]
        runs = comparison.get("total_ratio_runs", [])
        lines += ["", f"Against the floor (`benchmarks/floor.py`, same run: {floor_result['deliveries']} deliveries at "
                  f"{floor_result['offered_per_s']:g}/s, the same SDKs and emulators, no project code) and the "
                  f"project's {comparison['compared_scenario']} (tracing off) on a fresh stack after it, in turn "
                  f"{len(runs)} times; total ratio of each pair {runs}, the median pair shown. CPU ms per delivery:",
                  "",
                  "| process | project | floor | ratio |", "|---|---|---|---|"]
        lines += [f"| {name}{' (floor: its client)' if name == 'devhost' else ''} | {row['project_ms']} | "
                  f"{row['floor_ms']} | {row['ratio']} |" for name, row in comparison["cpu_against_floor"].items()]
    ops = comparison.get("operations_per_delivery")
    if ops:
        lines += ["", "Operations per delivery (the project's counted from the trace store, one span per SDK call):",
                  "", "| operation | project | floor |", "|---|---|---|"]
        lines += [f"| {kind} | {n} | {ops['floor'].get(kind, '')} |" for kind, n in ops["project"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000, help="throughput scenario size")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",") if x], default=[30.0, 20.0, 10.0],
                        help="offered rates (deliveries/s) of the latency scenarios, comma-separated")
    parser.add_argument("--rate-seconds", type=float, default=20.0, help="length of each latency scenario")
    parser.add_argument("--fleet-size", type=int, default=500)
    parser.add_argument("--instances", type=int, default=1, help="devhost instances (scale-out)")
    parser.add_argument("--threads", type=int, default=32, help="PYTHON_THREADPOOL_THREAD_COUNT of each instance")
    parser.add_argument("--tracing-deliveries", type=int, default=1000,
                        help="deliveries per tracing mode (off, no-op exporter, trace store) at --tracing-rate")
    parser.add_argument("--tracing-rate", type=float, default=10.0,
                        help="below the stack's throughput, so no backlog inflates the CPU per delivery")
    parser.add_argument("--tracing-repeats", type=int, default=3)
    parser.add_argument("--only-tracing", action="store_true", help="run only the tracing-cost scenarios")
    parser.add_argument("--floor-deliveries", type=int, default=200, help="deliveries of the floor (0: no floor)")
    parser.add_argument("--floor-rate", type=float, default=10.0, help="the floor's rate, and the project's compared")
    parser.add_argument("--floor-repeats", type=int, default=3,
                        help="floor and project runs in turn, for the comparison (the median pair is shown)")
    args = parser.parse_args()
    results = []
    comparison: dict[str, Any] = {}
    if not args.only_tracing:
        if args.floor_deliveries and args.floor_repeats:
            comparison.update(against_floor_interleaved(args))
        results.append({"scenario": "throughput", **on_a_fresh_stack(args, args.deliveries, args.concurrency, None,
                                                                     "off")})
        for rate in sorted(set(args.rates), reverse=True):
            total = max(1, int(rate * args.rate_seconds))
            results.append({"scenario": f"{rate:g}/s for {args.rate_seconds:g} s",
                            **on_a_fresh_stack(args, total, max(args.concurrency, 64), rate, "off")})
        counted = on_a_fresh_stack(args, max(1, int(args.floor_rate * args.rate_seconds)), max(args.concurrency, 64),
                                   args.floor_rate, "trace store", count_operations=True)
        comparison["operations_per_delivery"] = {"project": counted["operations_per_delivery"], "floor": OPERATIONS}
    if args.tracing_deliveries:
        results.extend(tracing_cost(args))
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "python": platform.python_version(), "fleet_size": args.fleet_size, "flight_time_s": 0,
            "storage": "in-memory", "instances": args.instances, "threads": args.threads,
            "target": {"deliveries_per_s": TARGET_PER_S, "p99_ms": TARGET_P99_MS}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "tracing" if args.only_tracing else "deliveries"  # --only-tracing keeps the full run's results
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "results": results, **comparison}, indent=2)
                                          + "\n")
    text = markdown(meta, results) + floor_markdown(comparison)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return 0 if all(r["shipped"] == r["deliveries"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
