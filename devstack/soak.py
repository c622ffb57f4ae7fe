"""``make soak``: nothing lost, nothing twice, under crashes and outages, checked from the stores.

On a durable local stack (Azurite, both emulators and devhost writing to disk, free ports) it
submits deliveries over HTTP (ordinary parcels, more at once than there are drones, parcels over
their size's limit, parcels no drone can carry, and the same request sent again) and drops payment
files into Blob Storage, while at random moments it SIGKILLs devhost and the Service Bus emulator
(each restarted on the same ports and data) and pauses Azurite (SIGSTOP, then SIGCONT). A client
whose request met a dead host or an outage sends it again, as a client would; only requests
answered 202 count as accepted.

When everything has ended (bounded), it reads the stores, not the logs, and checks:

* every accepted delivery ended exactly once (one terminal entry in its history) with the outcome
  and reason its kind calls for; no delivery record is left without an end;
* no outbox is left in any delivery record;
* every drone is free, and no drone was held by two deliveries at once (a delivery's drone was
  assigned after an earlier holder decided to release it);
* one notification per ended delivery, of the matching type;
* every payment file ended as expected, with one output (and one status report) per completed
  file, a report for each rejected one, and no work file left;
* dead letters are exactly the expected poison (the parcels refused by Package or Drone
  Scheduler, the rejected payment files), each with a reason, as remediation recorded them; no
  message ran out of deliveries (no ``MaxDeliveryCountExceeded`` or expiry among them, nothing
  left in ``deadletter``'s own dead-letter queue).

Prints a table, each violation with its ids, and last ``soak: N submitted, N ended, L lost, D
duplicated``; exits 1 on any violation. ``--seed`` repeats a run's chaos.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import random
import re
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient
from azure.servicebus import ServiceBusClient, ServiceBusSubQueue
from azure.storage.blob import BlobServiceClient

from choreography.entities import DRONES_TABLE, REMEDIATIONS_TABLE
from devstack.samples import generate_csv, generate_nacha
from drone_scheduler.adapters import BOOKING_PREFIX, FLEET
from remediation.adapters import TableAuditLog
from remediation.domain import TRANSIENT, AuditEntry

from .clock import PAYMENT_CLOCK
from .demo import PAYMENT_CASES, SAMPLES, request
from .seed import seed_all
from .stack import Stack

TERMINAL = ("Shipped", "Cancelled")
IN_LINE = re.compile(r"after ([0-9.]+) s in line")
PAYMENT_FINAL = ("Completed", "Rejected")
EXECUTION_DATE = dt.date(2026, 11, 23)  # a business day after PAYMENT_CLOCK
SETTINGS = {"FLIGHT_TIME_SECONDS": "0", "JOIN_TIMEOUT_SECONDS": "180", "DRONE_RETRY_BASE_SECONDS": "1",
            "DRONE_RETRY_MAX_SECONDS": "4", "PAYMENT_FILES_CLOCK": PAYMENT_CLOCK}


PACKAGE_REFUSES = ("deliveries/subscriptions/package", "WeightExceedsSizeLimit")
SCHEDULER_REFUSES = ("deliveries/subscriptions/drone-scheduler", "NoDroneCanCarryWeight")


@dataclass(frozen=True)
class Kind:
    name: str
    size: str
    weight: float
    status: str
    reasons: tuple[str | None, ...] = (None,)  # the side that fails first names the reason
    dead_letters: tuple[tuple[str, str], ...] = ()  # (source, reason) of the poison it leaves
    # both sides refuse: the one that answers first cancels the delivery, and the other may then
    # find it cancelled and stop without a dead letter of its own
    any_dead_letter: bool = False


KINDS = {
    "ordinary": [Kind("ordinary", size, weight, "Shipped")
                 for size, weight in (("small", 2.0), ("medium", 8.0), ("medium", 20.0), ("large", 35.0),
                                      ("small", 4.5), ("large", 55.0), ("medium", 12.0), ("small", 1.0))],
    "overweight": [Kind("overweight", "small", 8.0, "Cancelled", (PACKAGE_REFUSES[1],), (PACKAGE_REFUSES,))],
    "too heavy": [Kind("too heavy", "large", 80.0, "Cancelled", (SCHEDULER_REFUSES[1],), (SCHEDULER_REFUSES,))],
    "both refuse": [Kind("both refuse", "small", 200.0, "Cancelled", (PACKAGE_REFUSES[1], SCHEDULER_REFUSES[1]),
                         (PACKAGE_REFUSES, SCHEDULER_REFUSES), any_dead_letter=True)],
}
MIX = [("ordinary", 0.82), ("overweight", 0.06), ("too heavy", 0.06), ("both refuse", 0.06)]
DUPLICATES = 0.06  # of the deliveries, sent a second time with the same body


@dataclass
class Options:
    deliveries: int = 1000
    files: int = 20
    devhost_kills: int = 5
    servicebus_kills: int = 2
    azurite_pauses: int = 2
    pause_seconds: float = 3.0
    rate: float = 10.0  # deliveries submitted per second
    seed: int | None = None
    data_dir: Path | None = None
    timeout: float = 900.0  # for everything to end once submitted
    echo: bool = False


@dataclass
class Delivery:
    delivery_id: str
    kind: Kind
    body: dict[str, Any]
    accepted: bool = False
    answers: list[int] = field(default_factory=list)


@dataclass
class PaymentFile:
    client: str
    name: str
    sample: str
    state: str
    reason: str | None
    view: dict[str, Any] | None = None


@dataclass
class Invariant:
    name: str
    expected: int
    seen: int
    violations: list[str] = field(default_factory=list)


@dataclass
class Report:
    invariants: list[Invariant] = field(default_factory=list)
    submitted: int = 0
    accepted: int = 0
    ended: int = 0
    lost: int = 0
    duplicated: int = 0
    chaos: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[str]:
        return [f"{i.name}: {v}" for i in self.invariants for v in i.violations]

    def check(self, name: str, expected: int, seen: int, violations: list[str]) -> None:
        self.invariants.append(Invariant(name, expected, seen, violations))

    def table(self) -> str:
        rows = [f"{'invariant':<52} {'expected':>9} {'seen':>9} {'violations':>10}"]
        rows += [f"{i.name:<52} {i.expected:>9} {i.seen:>9} {len(i.violations):>10}" for i in self.invariants]
        return "\n".join(rows)

    def last_line(self) -> str:
        return (f"soak: {self.accepted} submitted, {self.ended} ended, {self.lost} lost, "
                f"{self.duplicated} duplicated")


# ------------------------------------------------------------------------------------- workload
def plan_deliveries(count: int, rng: random.Random, run: str) -> list[Delivery]:
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    planned = []
    for i in range(count):
        kind_name = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        kind = rng.choice(KINDS[kind_name])
        delivery_id = f"soak-{run}-{i:05d}"
        body = {"deliveryId": delivery_id, "ownerId": "soak", "pickupLocation": "Warehouse 7",
                "dropoffLocation": "4th Ave", "deadline": deadline, "expedited": False,
                "confirmationRequired": False,
                "packageInfo": {"packageId": f"pkg-{delivery_id}", "size": kind.size, "weight": kind.weight,
                                "tag": kind.name}}
        planned.append(Delivery(delivery_id, kind, body))
    return planned


def submit(base: str, delivery: Delivery, patience: float = 240.0) -> None:
    """POST until answered for good, as a client would across a crash or an outage."""
    give_up = time.monotonic() + patience
    while time.monotonic() < give_up:
        try:
            code, _, _ = request("POST", f"{base}/deliveries", delivery.body)
        except OSError:  # the host is down (connection refused or reset): try again
            code = 0
        delivery.answers.append(code)
        if code == 202:
            delivery.accepted = True
            return
        if code in (400, 409, 413, 415):
            return  # refused for good: a violation for this workload, reported by the checks
        time.sleep(0.5)


def payment_file(i: int, run: str) -> tuple[PaymentFile, bytes]:
    """The i-th file: a valid CSV, a valid NACHA file, a CSV with bad IBANs under a reject-file
    policy, a hostile XML, in turn; each valid one with content and ids of its own (an identical
    file or a reused MsgId would rightly be a DU01 duplicate)."""
    kind = i % 4
    out = io.BytesIO()
    name = f"soak-{run}-{i:03d}"
    if kind == 0:
        generate_csv(out, 40, execution_date=EXECUTION_DATE, seed=i, prefix=f"S{run}{i:03d}")
        return PaymentFile("ACME001", f"{name}.csv", "generated CSV", "Completed", None), out.getvalue()
    if kind == 1:
        generate_nacha(out, 30, effective_date=EXECUTION_DATE, seed=i, creation=f"2611{i // 1440 % 100:02d}"
                       f"{i // 60 % 24:02d}{i % 60:02d}")
        return PaymentFile("INITECH03", f"{name}.ach", "generated NACHA", "Completed", None), out.getvalue()
    if kind == 2:
        generate_csv(out, 40, execution_date=EXECUTION_DATE, seed=i, prefix=f"B{run}{i:03d}", bad_every=7)
        return PaymentFile("ACME001", f"{name}.csv", "CSV with bad IBANs", "Rejected", "AC01"), out.getvalue()
    hostile = next(c for c in PAYMENT_CASES if c.sample == "billion_laughs.xml")
    return (PaymentFile(hostile.client, f"{name}.xml", hostile.sample, "Rejected", "FF01"),
            (SAMPLES / hostile.sample).read_bytes())


def upload_files(stack: Stack, count: int, run: str) -> list[PaymentFile]:
    blobs = BlobServiceClient.from_connection_string(stack.storage_connection)
    container = blobs.get_container_client("payment-files-in")
    if not container.exists():
        container.create_container()
    files = []
    for i in range(count):
        file, content = payment_file(i, run)
        container.upload_blob(f"{file.client}/{file.name}", content)
        files.append(file)
    return files


# ---------------------------------------------------------------------------------------- chaos
def plan_chaos(options: Options, window: float, rng: random.Random) -> list[tuple[float, str]]:
    events = ([(rng.uniform(2, window), "kill devhost") for _ in range(options.devhost_kills)]
              + [(rng.uniform(2, window), "kill servicebus") for _ in range(options.servicebus_kills)]
              + [(rng.uniform(2, window), "pause azurite") for _ in range(options.azurite_pauses)])
    return sorted(events)


def do_chaos(stack: Stack, event: str, options: Options) -> None:
    """Runs on the main thread: children must be started from a thread that outlives them."""
    if event == "kill devhost":
        stack.kill_devhost()
        stack.start_devhost()
    elif event == "kill servicebus":
        stack.kill_servicebus()
        time.sleep(0.5)
        stack.start_servicebus()
    elif event == "pause azurite":
        stack.pause("azurite")
        time.sleep(options.pause_seconds)
        stack.resume("azurite")


# -------------------------------------------------------------------------------------- stores
def _rows(tables: TableServiceClient, table: str) -> list[dict[str, Any]]:
    try:
        return list(tables.get_table_client(table).list_entities())
    except Exception:  # noqa: BLE001 - a table nobody wrote yet has no rows
        return []


def _drones(tables: TableServiceClient) -> list[dict[str, Any]]:
    """The fleet's rows, without the deliveries' bookings that share its partition."""
    return [r for r in _rows(tables, DRONES_TABLE) if r["PartitionKey"] == FLEET and r["RowKey"] < BOOKING_PREFIX]


def audit_entries(stack: Stack) -> list[AuditEntry]:
    with TableServiceClient.from_connection_string(stack.storage_connection) as tables:
        return list(TableAuditLog(tables.create_table_if_not_exists(REMEDIATIONS_TABLE)).entries())


def peek_all(client: ServiceBusClient, queue: str | None = None, subscription: str | None = None,
             dead_letter: bool = False) -> list[Any]:
    """Every message of a queue, or of a subscription of ``deliveries`` (or its dead-letter queue),
    browsed without taking any."""
    sub_queue = ServiceBusSubQueue.DEAD_LETTER if dead_letter else None
    receiver = (client.get_queue_receiver(queue, sub_queue=sub_queue) if queue
                else client.get_subscription_receiver("deliveries", subscription, sub_queue=sub_queue))
    found: list[Any] = []
    with receiver:
        sequence = 0
        while True:
            batch = receiver.peek_messages(max_message_count=250, sequence_number=sequence)
            if not batch:
                return found
            found += batch
            sequence = max(m.sequence_number for m in batch) + 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _history(row: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(row.get("history") or "[]")


def _at(entry: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(entry["at"])


def drone_overlaps(rows: list[dict[str, Any]]) -> list[str]:
    """A drone assigned to a delivery while its earlier holder had not yet decided to release it.

    Sound, not complete: the assignment happens before ``DroneScheduled`` is stamped and the
    release after the delivery's *first* ``ReleaseDrone`` is logged, so an overlap of these two
    instants is certain. (A delivery cancelled before its drone was known logs a ``ReleaseDrone``
    for any drone first: its span is empty and not checked.)"""
    held: dict[str, list[tuple[dt.datetime, dt.datetime, str]]] = defaultdict(list)
    for row in rows:
        history = _history(row)
        scheduled = [h for h in history if h["status"] == "DroneScheduled" and h.get("detail")
                     and "(extra)" not in h["detail"]]
        released = [h for h in history if h["status"] == "ReleaseDrone"]
        if scheduled and released and _at(released[0]) >= _at(scheduled[0]):
            held[scheduled[0]["detail"].split()[0]].append((_at(scheduled[0]), _at(released[0]), row["PartitionKey"]))
    problems = []
    for drone, spans in held.items():
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                problems.append(f"{drone} held by {first} and {second} at {start.isoformat()}")
    return problems


def settled(stack: Stack, deliveries: list[Delivery], files: list[PaymentFile]) -> bool:
    tables = TableServiceClient.from_connection_string(stack.storage_connection)
    status = {r["PartitionKey"]: r for r in _rows(tables, "deliveries")}
    if any(status.get(d.delivery_id, {}).get("status") not in TERMINAL for d in deliveries if d.accepted):
        return False
    if any(r.get("outbox") for r in status.values()):
        return False
    if any(r.get("deliveryId") for r in _drones(tables)):
        return False
    # Event Grid retries a delivery to a host that was down after a backoff (10 s first), so an
    # ended delivery's notification may still be on its way: wait for it too.
    noted = {r["PartitionKey"] for r in _rows(tables, "notifications")}
    if any(d.delivery_id not in noted for d in deliveries if d.accepted):
        return False
    base = f"{stack.functions_url}/api"
    for file in files:
        if file.view is None or file.view.get("state") not in PAYMENT_FINAL:
            try:
                code, view, _ = request("GET", f"{base}/payment-files/{file.client}/{file.name}")
            except OSError:
                return False
            if code != 200:
                return False
            file.view = view
            if view.get("state") not in PAYMENT_FINAL:
                return False
    blobs = BlobServiceClient.from_connection_string(stack.storage_connection)
    work = blobs.get_container_client("payment-files-work")
    return not (work.exists() and any(True for _ in work.list_blobs()))


def wait_until_settled(stack: Stack, deliveries: list[Delivery], files: list[PaymentFile], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if settled(stack, deliveries, files):
                return True
        except Exception as exc:  # noqa: BLE001 - a store restarting: look again
            print(f"  (still settling: {type(exc).__name__})", flush=True)
        time.sleep(2)
    return False


def check(stack: Stack, deliveries: list[Delivery], files: list[PaymentFile], report: Report) -> None:
    tables = TableServiceClient.from_connection_string(stack.storage_connection)
    rows = {r["PartitionKey"]: r for r in _rows(tables, "deliveries")}
    accepted = [d for d in deliveries if d.accepted]
    mine = {d.delivery_id for d in deliveries}

    refused = [f"{d.delivery_id} answered {d.answers[-5:]}" for d in deliveries if not d.accepted]
    report.check("every request accepted (202), retried across outages", len(deliveries),
                 len(accepted), refused)

    ended, wrong, twice, not_ended = 0, [], [], []
    for d in accepted:
        row = rows.get(d.delivery_id)
        if row is None or row.get("status") not in TERMINAL:
            not_ended.append(f"{d.delivery_id} is {row.get('status') if row else 'missing'}")
            continue
        ended += 1
        ends = [h for h in _history(row) if h["status"] in TERMINAL]
        if len(ends) != 1:
            twice.append(f"{d.delivery_id} ended {len(ends)} times: {[h['status'] for h in ends]}")
        reason = row.get("reason") or None
        if row["status"] != d.kind.status or reason not in d.kind.reasons:
            wrong.append(f"{d.delivery_id} ({d.kind.name} {d.kind.weight:g} kg) ended {row['status']} "
                         f"{reason or ''}, expected {d.kind.status} {' or '.join(map(str, d.kind.reasons))}")
    strays = [f"{pk} is {r.get('status')}" for pk, r in rows.items()
              if pk not in mine and r.get("status") not in TERMINAL]
    report.check("every accepted delivery ended", len(accepted), ended, not_ended)
    report.check("... exactly once", len(accepted), ended - len(twice), twice)
    report.check("... with the outcome and reason of its kind", len(accepted), ended - len(wrong), wrong)
    report.check("no other delivery record left unended", 0, len(strays), strays)
    outboxes = [pk for pk, r in rows.items() if r.get("outbox")]
    report.check("no outbox left in a delivery record", 0, len(outboxes), outboxes)

    fleet = _drones(tables)
    busy = [f"{r['RowKey']} still held by {r['deliveryId']}" for r in fleet if r.get("deliveryId")]
    report.check("every drone free at the end", len(fleet), len(fleet) - len(busy), busy)
    overlaps = drone_overlaps(list(rows.values()))
    report.check("no drone held by two deliveries at once", 0, len(overlaps), overlaps)
    queued = sorted(float(m.group(1)) for r in rows.values() for h in _history(r)
                    if h["status"] == "DroneScheduled" and (m := IN_LINE.search(h.get("detail") or "")))
    if queued:
        report.notes.append(f"{len(queued)} deliveries waited in line for a drone: p50 "
                            f"{queued[len(queued) // 2]:.1f} s, p99 {queued[int(len(queued) * 0.99)]:.1f} s, "
                            f"max {queued[-1]:.1f} s")

    notes = defaultdict(list)
    for row in _rows(tables, "notifications"):
        notes[row["PartitionKey"]].append(row)
    note_problems = []
    noted_twice = sum(1 for d in accepted if len(notes.get(d.delivery_id, [])) > 1)
    for d in accepted:
        row = rows.get(d.delivery_id)
        if row is None or row.get("status") not in TERMINAL:
            continue
        expected_type = "DeliveryShipped" if row["status"] == "Shipped" else "DeliveryFailed"
        found = notes.get(d.delivery_id, [])
        if [n["eventType"] for n in found] != [expected_type]:
            note_problems.append(f"{d.delivery_id}: {[n['eventType'] for n in found]}, expected [{expected_type}]")
    report.check("one notification per ended delivery", ended, ended - len(note_problems), note_problems)
    try:
        code, events, _ = request("GET", f"{stack.eventgrid_url}/topics/deliveries/events")
        ids = Counter(e.get("id") or e.get("event", {}).get("id") for e in events) if code == 200 else Counter()
        repeated = sum(n - 1 for n in ids.values() if n > 1)
        report.notes.append(f"Event Grid events published again with the same id (at-least-once after a "
                            f"crash between announcing and clearing the outbox): {repeated}")
    except OSError:
        pass

    check_files(stack, files, report)
    check_dead_letters(stack, accepted, files, report)

    report.accepted = len(accepted)
    report.ended = ended + sum(1 for f in files if (f.view or {}).get("state") in PAYMENT_FINAL)
    report.accepted += len(files)
    report.lost = len(not_ended) + sum(1 for f in files if (f.view or {}).get("state") not in PAYMENT_FINAL)
    report.duplicated += len(twice) + len(overlaps) + noted_twice


def check_files(stack: Stack, files: list[PaymentFile], report: Report) -> None:
    blobs = BlobServiceClient.from_connection_string(stack.storage_connection)

    def names(container: str, prefix: str = "") -> list[str]:
        client = blobs.get_container_client(container)
        return [b.name for b in client.list_blobs(name_starts_with=prefix)] if client.exists() else []

    wrong, missing, doubled = [], [], []
    for file in files:
        view = file.view or {}
        where = f"{file.client}/{file.name}"
        if view.get("state") != file.state:
            wrong.append(f"{where} ended {view.get('state')}, expected {file.state}")
            continue
        reasons = [r["code"] for r in view.get("reasons", [])] + list(view.get("transactionReasons", {}))
        if file.reason and file.reason not in reasons:
            wrong.append(f"{where} reasons {reasons}, expected {file.reason}")
        locations = view.get("locations", {})
        file_id = view.get("fileId", "")
        for kind in ("statusReport", *(("output",) if file.state == "Completed" else ())):
            container, _, blob = (locations.get(kind) or "/").partition("/")
            if not blob or blob not in names(container, blob):
                missing.append(f"{where}: no {kind} ({locations.get(kind)})")
        outputs = names("payment-files-out", f"{file.client}/{file_id}")
        if len(outputs) > (1 if file.state == "Completed" else 0):
            doubled.append(f"{where}: outputs {outputs}")
    report.check("every payment file ended as expected", len(files), len(files) - len(wrong), wrong)
    report.check("... with its output and status report", len(files), len(files) - len(missing), missing)
    report.check("... and never two outputs", 0, len(doubled), doubled)
    report.duplicated += len(doubled)
    work = names("payment-files-work")
    report.check("no work file left", 0, len(work), work[:20])


def check_dead_letters(stack: Stack, accepted: list[Delivery], files: list[PaymentFile], report: Report) -> None:
    expected: dict[str, tuple[tuple[tuple[str, str], ...], bool]] = {
        d.delivery_id: (d.kind.dead_letters, d.kind.any_dead_letter) for d in accepted if d.kind.dead_letters}
    for file in files:
        view = file.view or {}
        if file.state == "Rejected" and view.get("fileId"):  # FileValidator's rejections only, here
            expected[view["fileId"]] = ((("payment-files-in", ""),), False)
    # Every dead letter ends in remediation's audit (queue deadletter, fed by every entity's own
    # dead-letter queue); what remediation itself could not take stays in deadletter's.
    entries = audit_entries(stack)
    letters = [e.record for e in entries]
    with ServiceBusClient.from_connection_string(stack.servicebus_connection) as client:
        stuck = peek_all(client, "deadletter", dead_letter=True)
    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    unexpected, no_reason = [], []
    for letter in letters:
        props = {k: _text(v) for k, v in letter.properties.items()}
        about = letter.correlation_id or props.get("fileId", "")
        reason, source = props.get("DeadLetterReason", ""), props.get("DeadLetterSource", "")
        if not reason:
            no_reason.append(f"{about} from {source}")
        if about not in expected:
            unexpected.append(f"{about} from {source}: {reason} {props.get('DeadLetterErrorDescription', '')[:120]}")
            continue
        seen[about].append((source, reason))
    missing = []
    for about, (letters_expected, any_one) in expected.items():
        found = seen.get(about, [])
        absent = [(source, reason) for source, reason in letters_expected
                  if not any(s == source and (not reason or r == reason) for s, r in found)]
        if absent and not (any_one and len(absent) < len(letters_expected)):
            missing.append(f"{about}: expected {absent}, found {found}")
    total = len(expected)
    report.check("dead letters: every expected poison, with its reason", total, total - len(missing), missing)
    report.check("dead letters: nothing unexpected", 0, len(unexpected), unexpected)
    report.check("dead letters: each with a reason", len(letters), len(letters) - len(no_reason), no_reason)
    exhausted = [f"{r.entity}: {r.correlation_id} {r.reason} {r.description[:120]}" for r in letters
                 if r.reason in TRANSIENT]
    exhausted += [f"deadletter: {_text(m.correlation_id)} {_text(m.dead_letter_reason)}" for m in stuck]
    report.check("no message ran out of deliveries ($DeadLetterQueue)", 0, len(exhausted), exhausted)


# ----------------------------------------------------------------------------------------- run
def run_soak(options: Options) -> Report:
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    print(f"soak: seed {seed}, data in {data_dir}", flush=True)
    report = Report()
    stack = Stack(data_dir=data_dir, with_devhost=False, settings=dict(SETTINGS), echo=options.echo,
                  log_dir=data_dir / "logs")
    try:
        stack.start()
        seed_all(stack.storage_connection)
        stack.start_devhost()
        base = f"{stack.functions_url}/api"
        deliveries = plan_deliveries(options.deliveries, rng, run)
        duplicates = rng.sample(deliveries, int(len(deliveries) * DUPLICATES))
        submit_seconds = options.deliveries / options.rate
        chaos = plan_chaos(options, submit_seconds + 10, rng)
        print(f"soak: {len(deliveries)} deliveries ({len(duplicates)} sent twice) and {options.files} payment "
              f"files over about {submit_seconds:.0f} s; chaos: {', '.join(f'{e} at {t:.1f} s' for t, e in chaos)}",
              flush=True)
        files: list[PaymentFile] = []
        pool = ThreadPoolExecutor(max_workers=16)
        started = time.monotonic()

        def feed() -> None:
            for i, delivery in enumerate(deliveries):
                pause = started + i / options.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pool.submit(submit, base, delivery)
            for delivery in duplicates:
                pool.submit(submit, base, Delivery(delivery.delivery_id, delivery.kind, delivery.body))

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        files = upload_files(stack, options.files, run)
        for at, event in chaos:
            pause = started + at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            print(f"  {time.monotonic() - started:6.1f} s  {event}", flush=True)
            do_chaos(stack, event, options)
            report.chaos.append(f"{event} at {time.monotonic() - started:.1f} s")
        feeder.join()
        pool.shutdown(wait=True)
        print(f"soak: all submitted after {time.monotonic() - started:.0f} s; waiting for everything to end",
              flush=True)
        if not wait_until_settled(stack, deliveries, files, options.timeout):
            report.notes.append(f"not everything ended within {options.timeout:.0f} s; checking what is there")
        for file in files:  # the final view of each, whatever the wait saw
            try:
                code, view, _ = request("GET", f"{base}/payment-files/{file.client}/{file.name}")
                file.view = view if code == 200 else file.view
            except OSError:
                pass
        check(stack, deliveries, files, report)
        report.submitted = len(deliveries) + len(files)
        report.notes.append(f"took {time.monotonic() - started:.0f} s; seed {seed}")
    finally:
        stack.stop()
    return report


def print_report(report: Report) -> None:
    print()
    print(report.table())
    for violation in report.violations[:200]:
        print(f"  !! {violation}")
    for note in report.notes:
        print(f"  note: {note}")
    print(report.last_line(), flush=True)
