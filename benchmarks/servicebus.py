"""Service Bus emulator benchmark: ``python -m benchmarks.servicebus`` (``make bench``).

For a durable (SQLite) and an in-memory emulator, with 1 and with 8 concurrent SDK clients
(each in its own process, so client-side Python does not share one GIL):

* batched send: msg/s of ``send_messages(batch)`` with batches of 100 messages of 256 bytes;
* peek-lock receive + complete: msg/s of receiving those messages and completing each one
  (every completion waits for the broker's confirmation, as the SDK does);
* send-to-complete latency: one message at a time, from the start of ``send_messages`` to the
  return of ``complete_message`` on an open receiver; p50 and p99.

Results are printed and written to ``benchmarks/results/servicebus.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.servicebus import ServiceBusClient, ServiceBusMessage  # noqa: E402

from devstack.stack import ServiceBusEmulator  # noqa: E402

CONFIG = Path(__file__).with_name("servicebus-config.json")
RESULTS = ROOT / "benchmarks" / "results"
BODY = b"x" * 256
BATCH = 100


def _sender(conn: str, queue: str, count: int, start: Any, out: Any) -> None:
    with ServiceBusClient.from_connection_string(conn) as client, client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage(b"warm"))  # open the link before the clock starts
        start.wait()
        t0 = time.perf_counter()
        sent = 0
        while sent < count:
            n = min(BATCH, count - sent)
            sender.send_messages([ServiceBusMessage(BODY) for _ in range(n)])
            sent += n
        out.put(("send", sent, t0, time.perf_counter()))


def _receiver(conn: str, queue: str, count: int, start: Any, out: Any, total: Any = None) -> None:
    # Receivers share one target: whoever is fed by the broker's round robin works until the
    # queue's messages are all completed, however unevenly they were spread.
    with ServiceBusClient.from_connection_string(conn) as client, \
            client.get_queue_receiver(queue, prefetch_count=50) as receiver:
        start.wait()
        t0 = time.perf_counter()
        done = 0
        idle_since = time.monotonic()
        while total.value < count and time.monotonic() - idle_since < 10:
            batch = receiver.receive_messages(max_message_count=50, max_wait_time=0.2)
            if batch:
                idle_since = time.monotonic()
            for msg in batch:
                receiver.complete_message(msg)
                done += 1
                with total.get_lock():
                    total.value += 1
        out.put(("receive", done, t0, time.perf_counter() if done else t0))


def _run_parallel(target: Any, conn: str, queue: str, total: int, clients: int) -> float:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    if target is _receiver:
        counter = ctx.Value("q", 0)
        procs = [ctx.Process(target=target, args=(conn, queue, total, start, out, counter)) for _ in range(clients)]
    else:
        procs = [ctx.Process(target=target, args=(conn, queue, total // clients, start, out))
                 for _ in range(clients)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let every client connect and attach
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    moved = sum(r[1] for r in results)
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    return moved / elapsed


def _drain(conn: str, queue: str) -> None:
    from azure.servicebus import ServiceBusReceiveMode

    with ServiceBusClient.from_connection_string(conn) as client, client.get_queue_receiver(
            queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=500) as r:
        while r.receive_messages(max_message_count=500, max_wait_time=1):
            pass


def _latency(conn: str, queue: str, samples: int) -> tuple[float, float]:
    timings: list[float] = []
    with ServiceBusClient.from_connection_string(conn) as client, client.get_queue_sender(queue) as sender, \
            client.get_queue_receiver(queue, prefetch_count=1) as receiver:
        for i in range(samples + 20):
            t0 = time.perf_counter()
            sender.send_messages(ServiceBusMessage(BODY))
            (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            receiver.complete_message(msg)
            if i >= 20:  # warm-up
                timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


def bench(durable: bool, messages: int, latency_samples: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        emulator = ServiceBusEmulator(CONFIG, data_dir=Path(tmp) / "sb" if durable else None).start()
        try:
            conn = emulator.connection_string
            for clients in (1, 8):
                queue = f"bench-{clients}"
                _drain(conn, queue)
                send = _run_parallel(_sender, conn, queue, messages, clients)
                receive = _run_parallel(_receiver, conn, queue, messages, clients)
                _drain(conn, queue)
                row: dict[str, Any] = {"storage": "durable" if durable else "in-memory", "clients": clients,
                                       "batched_send_msg_per_s": round(send), "receive_complete_msg_per_s":
                                       round(receive)}
                if clients == 1:
                    p50, p99 = _latency(conn, "bench-latency", latency_samples)
                    row.update({"latency_p50_ms": round(p50, 2), "latency_p99_ms": round(p99, 2)})
                rows.append(row)
        finally:
            emulator.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=1_000)
    args = parser.parse_args()
    rows = bench(True, args.messages, args.latency_samples) + bench(False, args.messages, args.latency_samples)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "python": platform.python_version(), "messages": args.messages, "body_bytes": len(BODY),
            "batch": BATCH}
    (RESULTS / "servicebus.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    lines = ["# Service Bus emulator benchmark", "",
             f"{meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}, {args.messages} messages of "
             f"{len(BODY)} B per run, batches of {BATCH}.", "",
             "| storage | clients | batched send msg/s | receive+complete msg/s | p50 ms | p99 ms |",
             "|---|---|---|---|---|---|"]
    lines.extend(f"| {r['storage']} | {r['clients']} | {r['batched_send_msg_per_s']} | "
                 f"{r['receive_complete_msg_per_s']} | {r.get('latency_p50_ms', '')} | "
                 f"{r.get('latency_p99_ms', '')} |" for r in rows)
    text = "\n".join(lines) + "\n"
    (RESULTS / "servicebus.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
