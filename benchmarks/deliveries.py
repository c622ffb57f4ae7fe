"""Drone delivery benchmark: ``python -m benchmarks.deliveries`` (part of ``make bench``).

Starts the whole local stack (Azurite, both emulators, devhost; in memory), seeds a fleet big
enough that drones are not the bottleneck, subscribes a webhook of its own to the Event Grid
topic for ``DeliveryShipped``, then submits N deliveries over HTTP at a bounded concurrency.

* deliveries/s: N divided by the time from the first submission to the last ``Shipped``;
* latency: from the ``202 Accepted`` of a delivery to the arrival of its ``DeliveryShipped``
  event at the webhook (the end of the choreography as a downstream consumer sees it); p50, p99.

Results: ``benchmarks/results/deliveries.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web  # noqa: E402

from devstack.stack import Stack, free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def body(delivery_id: str, i: int) -> dict[str, Any]:
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    size, weight = [("small", 2.0), ("medium", 9.0), ("large", 30.0)][i % 3]
    return {"deliveryId": delivery_id, "ownerId": "bench", "pickupLocation": "A", "dropoffLocation": "B",
            "deadline": deadline.isoformat().replace("+00:00", "Z"), "expedited": False,
            "confirmationRequired": False,
            "packageInfo": {"packageId": f"p-{delivery_id}", "size": size, "weight": weight, "tag": "bench"}}


async def run(stack: Stack, total: int, concurrency: int) -> dict[str, Any]:
    shipped: dict[str, float] = {}
    accepted: dict[str, float] = {}
    done = asyncio.Event()

    async def on_event(request: web.Request) -> web.Response:
        if request.method == "OPTIONS":  # CloudEvents abuse-protection handshake
            return web.Response(headers={"WebHook-Allowed-Origin": request.headers.get("WebHook-Request-Origin", "*")})
        now = time.perf_counter()
        payload = await request.json()
        for event in payload if isinstance(payload, list) else [payload]:
            data = event.get("data") or {}
            delivery_id = data.get("deliveryId") or str(event.get("subject", "")).rsplit("/", 1)[-1]
            shipped.setdefault(delivery_id, now)
        if len(shipped) >= total:
            done.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/events", on_event)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # The subscription handshake calls back into this loop's webhook, so the PUT must not block it.
    async with ClientSession() as http:
        async with http.put(f"{stack.eventgrid_url}/topics/deliveries/subscriptions/bench",
                            json={"endpoint": f"http://127.0.0.1:{port}/events",
                                  "includedEventTypes": ["DeliveryShipped"]}) as resp:
            if resp.status not in (200, 201):
                raise RuntimeError(f"cannot subscribe the benchmark webhook: {resp.status} {await resp.text()}")

    semaphore = asyncio.Semaphore(concurrency)
    ids = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(total)]
    async with ClientSession(connector=TCPConnector(limit=concurrency), timeout=ClientTimeout(total=120)) as http:
        async def submit(i: int, delivery_id: str) -> None:
            async with semaphore:
                async with http.post(f"{stack.functions_url}/api/deliveries", json=body(delivery_id, i)) as resp:
                    await resp.read()
                    if resp.status != 202:
                        raise RuntimeError(f"submission answered {resp.status}")
                    accepted[delivery_id] = time.perf_counter()

        started = time.perf_counter()
        await asyncio.gather(*(submit(i, d) for i, d in enumerate(ids)))
        submitted = time.perf_counter()
        try:
            await asyncio.wait_for(done.wait(), timeout=max(300, total / 5))
        except TimeoutError:
            pass
    await runner.cleanup()
    latencies = sorted((shipped[d] - accepted[d]) * 1000 for d in ids if d in shipped and d in accepted)
    finished = max(shipped.values()) if shipped else time.perf_counter()
    return {
        "deliveries": total, "shipped": len(latencies), "concurrency": concurrency,
        "submit_per_s": round(total / (submitted - started), 1),
        "deliveries_per_s": round(len(latencies) / (finished - started), 1),
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1) if latencies else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fleet-size", type=int, default=500)
    args = parser.parse_args()
    stack = Stack(with_devhost=False, settings={"FLIGHT_TIME_SECONDS": "0"})
    with stack:
        import subprocess

        subprocess.run([sys.executable, "-m", "drone_scheduler.seed", "--connection", stack.storage_connection,
                        "--fleet-size", str(args.fleet_size)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        stack.start_devhost()
        result = asyncio.run(run(stack, args.deliveries, args.concurrency))
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "python": platform.python_version(), "fleet_size": args.fleet_size, "flight_time_s": 0,
            "storage": "in-memory"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deliveries.json").write_text(json.dumps({"meta": meta, "result": result}, indent=2) + "\n")
    text = "\n".join([
        "# Drone delivery benchmark", "",
        f"{meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}, whole local stack in memory, "
        f"fleet of {args.fleet_size}, flight time 0 s, {args.concurrency} concurrent HTTP clients.", "",
        "| deliveries | shipped | submissions/s | deliveries/s (submit → last Shipped) "
        "| p50 ms (202 → Shipped) | p99 ms |",
        "|---|---|---|---|---|---|",
        f"| {result['deliveries']} | {result['shipped']} | {result['submit_per_s']} | {result['deliveries_per_s']} | "
        f"{result['latency_p50_ms']} | {result['latency_p99_ms']} |", ""])
    (RESULTS / "deliveries.md").write_text(text)
    print(text)
    return 0 if result["shipped"] == result["deliveries"] else 1


if __name__ == "__main__":
    sys.exit(main())
