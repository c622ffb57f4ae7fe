"""The floor: what one delivery costs with the same SDKs and the same emulators, and nothing else.

``python -m benchmarks.floor`` (and, in the same run as the project's figures, ``python -m
benchmarks.deliveries``): one process, no Functions host and no project code, doing per delivery
only the operations the choreography needs:

* 1 send to topic ``deliveries`` (``DeliveryRequested``);
* 2 subscription receives + completes (``package``, ``drone-scheduler``);
* 2 sends to the session queue ``delivery-events`` (``PackageReady``, ``DroneScheduled``);
* 1 session accept with 2 receives + completes (the join);
* 1 Event Grid publish (``DeliveryShipped``);
* 2 Table writes (the package, the delivery record).

Deliveries start at a fixed rate (as the project's open-loop scenarios do), so the emulators'
idle time per delivery is the same in both; the two subscribers run in threads of their own and
the joins run side by side, as in the choreography. The CPU time of every process (this one, the
Service Bus emulator, Azurite, the Event Grid emulator) divided by the deliveries is the floor
the project's CPU per delivery is compared with (a ratio, measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.core.credentials import AzureKeyCredential  # noqa: E402
from azure.core.messaging import CloudEvent  # noqa: E402
from azure.data.tables import TableServiceClient, UpdateMode  # noqa: E402
from azure.eventgrid import EventGridPublisherClient  # noqa: E402
from azure.servicebus import ServiceBusClient, ServiceBusMessage  # noqa: E402

from devstack.stack import EVENTGRID_KEY, Stack  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CLOCK_TICKS = 100  # /proc's USER_HZ on Linux
# The operations per delivery, by kind: what the project's own counts are compared with.
OPERATIONS = {"servicebus sends": 3, "servicebus receives": 4, "servicebus completes": 4, "session accepts": 1,
              "eventgrid publishes": 1, "table writes": 2, "table reads": 0}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def run_floor(stack: Stack, deliveries: int, rate: float, lanes: int = 16) -> dict[str, Any]:
    """``deliveries`` floor deliveries against ``stack``'s emulators; CPU ms per delivery per process.

    As in the choreography, the two subscribers run on their own (one thread each, one receiver
    each) and a delivery's join runs when both have answered; up to ``lanes`` joins at once, since
    the SDK takes about half a second of waiting to open and to close a session receiver."""
    sb = ServiceBusClient.from_connection_string(stack.servicebus_connection)
    tables = TableServiceClient.from_connection_string(stack.storage_connection)
    table = tables.create_table_if_not_exists("floor")
    events = EventGridPublisherClient(f"{stack.eventgrid_url}/topics/deliveries/api/events",
                                      AzureKeyCredential(EVENTGRID_KEY))
    topic = sb.get_topic_sender("deliveries")
    lock = threading.Lock()  # senders and the Table/Event Grid clients are used from several threads
    stop = threading.Event()

    def subscriber(subscription: str, outcome: str, write: bool) -> None:
        with sb.get_subscription_receiver("deliveries", subscription) as receiver, \
                sb.get_queue_sender("delivery-events") as sender:
            while not stop.is_set():
                for message in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                    delivery_id = str(message.correlation_id)
                    if write:
                        with lock:
                            table.upsert_entity({"PartitionKey": delivery_id, "RowKey": "package"},
                                                mode=UpdateMode.REPLACE)
                    sender.send_messages(ServiceBusMessage(b"{}", subject=outcome, session_id=delivery_id,
                                                           correlation_id=delivery_id))
                    receiver.complete_message(message)

    def one(delivery_id: str) -> None:
        with lock:
            topic.send_messages(ServiceBusMessage(json.dumps({"deliveryId": delivery_id}).encode(),
                                                  subject="DeliveryRequested", correlation_id=delivery_id,
                                                  message_id=f"DeliveryRequested:{delivery_id}"))
        with sb.get_queue_receiver("delivery-events", session_id=delivery_id, max_wait_time=30) as join:
            received = 0
            while received < 2:
                batch = join.receive_messages(max_message_count=2 - received, max_wait_time=30)
                if not batch:
                    raise RuntimeError(f"the floor's outcomes for {delivery_id} never arrived")
                for message in batch:
                    join.complete_message(message)
                    received += 1
        with lock:
            table.upsert_entity({"PartitionKey": delivery_id, "RowKey": "delivery", "status": "Shipped"},
                                mode=UpdateMode.REPLACE)
            events.send([CloudEvent(source="/floor", type="DeliveryShipped", subject=f"/deliveries/{delivery_id}",
                                    data={"deliveryId": delivery_id})])

    subscribers = [threading.Thread(target=subscriber, args=("package", "PackageReady", True), daemon=True),
                   threading.Thread(target=subscriber, args=("drone-scheduler", "DroneScheduled", False), daemon=True)]
    for thread in subscribers:
        thread.start()
    try:
        with ThreadPoolExecutor(lanes) as pool:
            list(pool.map(one, [f"floor-warm-{uuid.uuid4().hex[:8]}" for _ in range(lanes)]))
            pids = {name: proc.pid for name, proc in stack.processes.items() if proc.pid}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            own_before = time.process_time()
            started = time.perf_counter()

            def paced(i: int) -> None:
                time.sleep(max(0.0, started + i / rate - time.perf_counter()))
                one(f"floor-{uuid.uuid4().hex[:12]}")

            list(pool.map(paced, range(deliveries)))
            elapsed = time.perf_counter() - started
            cpu = {"client": time.process_time() - own_before}
            cpu.update({name: cpu_seconds(pid) - before[name] for name, pid in pids.items()})
    finally:
        stop.set()
        for thread in subscribers:
            thread.join()
        for closable in (topic, sb, events, table, tables):
            closable.close()
    return {"deliveries": deliveries, "offered_per_s": rate, "seconds": round(elapsed, 1),
            "cpu_ms_per_delivery": {name: round(s * 1000 / deliveries, 2) for name, s in cpu.items()},
            "cpu_ms_per_delivery_total": round(sum(cpu.values()) * 1000 / deliveries, 1),
            "operations_per_delivery": OPERATIONS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    with Stack(with_devhost=False, with_traces=False) as stack:
        result = run_floor(stack, args.deliveries, args.rate)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "floor.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
