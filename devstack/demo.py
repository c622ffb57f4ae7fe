"""``make demo``: both choreographies, for real, on a fresh local stack.

Starts Azurite, both emulators and devhost (in memory, free ports), seeds the drone fleet and
the payment reference table, then:

* submits deliveries over HTTP (more at once than there are drones, plus ones that must fail),
  waits with a progress bar while the services choreograph them, and prints every delivery's
  journey (hop, time, outcome, compensation);
* drops sample payment files into Blob Storage (a valid CSV, a NACHA file, a pain.001.001.03,
  files with bad transactions under each client policy, a malicious XML) and shows what became
  of each;
* takes Table ``packages`` away while one delivery is submitted (a storage outage for the
  Package service alone): Service Bus gives the request up after five attempts, remediation
  resubmits it to the Package subscription once the table is back, and the delivery ships;
  then prints ``python -m ops dlq list --all``: every dead letter of the run and its decision.

Exits 0 only if every delivery and every file ended as expected.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from choreography.entities import PACKAGES_TABLE, REMEDIATIONS_TABLE
from remediation.adapters import TableAuditLog
from remediation.domain import Decision

from .clock import PAYMENT_CLOCK
from .seed import seed_all
from .stack import ROOT, Stack

FINAL = {"Shipped", "Cancelled"}
TRACES = ROOT / ".devstack" / "traces.sqlite"
SAMPLES = Path(__file__).with_name("samples") / "payments"


@dataclass
class PaymentCase:
    label: str
    client: str
    sample: str
    expect_state: str
    expect_group: str | None = None
    expect_reason: str | None = None
    result: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


PAYMENT_CASES = [
    PaymentCase("valid CSV", "ACME001", "csv_v1_valid.csv", "Completed", "ACCP"),
    PaymentCase("NACHA ACH file", "INITECH03", "nacha_valid.ach", "Completed", "ACCP"),
    PaymentCase("pain.001.001.03", "GLOBEX02", "pain001_03_valid.xml", "Completed", "ACCP"),
    PaymentCase("bad IBAN, client policy reject-file", "ACME001", "csv_v1_bad_iban.csv", "Rejected", "RJCT", "AC01"),
    PaymentCase("bad transactions, client policy pass-valid", "GLOBEX02", "csv_eu_mixed.csv", "Completed", "PART"),
    PaymentCase("billion-laughs XML", "GLOBEX02", "billion_laughs.xml", "Rejected", None, "FF01"),
]


@dataclass
class Case:
    label: str
    size: str
    weight: float
    expect_status: str
    expect_reason: str | None = None
    delivery_id: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:10]}")
    body: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


def cases(count: int) -> list[Case]:
    """Mostly ordinary parcels (more than the five drones at once), two of each kind of failure."""
    shapes = [("small", 2.0), ("medium", 8.0), ("large", 35.0), ("small", 4.5), ("medium", 20.0),
              ("large", 55.0), ("medium", 12.0), ("small", 1.0)]
    ordinary = max(count - 4, 1)
    found = [Case(f"ordinary {size} {weight:g} kg", size, weight, "Shipped")
             for size, weight in (shapes[i % len(shapes)] for i in range(ordinary))]
    found += [
        Case("small parcel over its 5 kg limit", "small", 8.0, "Cancelled", "WeightExceedsSizeLimit"),
        Case("medium parcel over its 25 kg limit", "medium", 30.0, "Cancelled", "WeightExceedsSizeLimit"),
        Case("80 kg: no drone in the fleet can carry it", "large", 80.0, "Cancelled", "NoDroneCanCarryWeight"),
        Case("95 kg: no drone in the fleet can carry it", "large", 95.0, "Cancelled", "NoDroneCanCarryWeight"),
    ]
    return found


def request(method: str, url: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None, dict(exc.headers)
        except ValueError:
            return exc.code, raw.decode(errors="replace"), dict(exc.headers)


def delivery_body(case: Case) -> dict[str, Any]:
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    return {"deliveryId": case.delivery_id, "ownerId": "demo-owner", "pickupLocation": "Warehouse 7, Redmond",
            "dropoffLocation": "4th Ave, Seattle", "deadline": deadline.isoformat().replace("+00:00", "Z"),
            "expedited": False, "confirmationRequired": False,
            "packageInfo": {"packageId": f"pkg-{case.delivery_id}", "size": case.size, "weight": case.weight,
                            "tag": case.label}}


def progress(done: int, total: int, started: float, width: int = 30) -> None:
    filled = int(width * done / total) if total else width
    elapsed = time.monotonic() - started
    line = f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} deliveries settled  {elapsed:5.1f} s"
    if sys.stdout.isatty():
        print(line, end="", flush=True)


def check(case: Case) -> None:
    result = case.result or {}
    status, reason = result.get("status"), result.get("reason")
    history = [h.get("status") for h in result.get("history", [])]
    if status != case.expect_status:
        case.problems.append(f"ended {status!r}, expected {case.expect_status!r}")
    if case.expect_reason and reason != case.expect_reason:
        case.problems.append(f"reason {reason!r}, expected {case.expect_reason!r}")
    if status == "Cancelled":
        # Compensation: whatever succeeded before the failure must have been undone.
        if "PackageReady" in history and "CancelPackage" not in history:
            case.problems.append("package was accepted but never cancelled")
        if "DroneScheduled" in history and "ReleaseDrone" not in history:
            case.problems.append("a drone was scheduled but never released")
    if status == "Shipped" and "ReleaseDrone" not in history:
        case.problems.append("the drone was not returned to the fleet")


def journey(case: Case, submitted_at: float) -> str:
    result = case.result or {}
    lines = [f"{'OK ' if not case.problems else 'BAD'} {case.delivery_id}  {case.label}: "
             f"{result.get('status')}{' (' + result['reason'] + ')' if result.get('reason') else ''}"]
    for hop in result.get("history", []):
        detail = f"  {hop['detail']}" if hop.get("detail") else ""
        lines.append(f"      {hop.get('at', '')[11:23]}  {hop.get('by', ''):<16} {hop.get('status')}{detail}")
    lines += [f"      !! {p}" for p in case.problems]
    return "\n".join(lines)


def run_demo(count: int = 20, timeout: float = 180.0) -> int:
    print("Starting the local stack (Azurite, Service Bus emulator, Event Grid emulator, devhost)...", flush=True)
    settings = {"FLIGHT_TIME_SECONDS": "0", "JOIN_TIMEOUT_SECONDS": "60", "DRONE_RETRY_BASE_SECONDS": "1",
                "DRONE_RETRY_MAX_SECONDS": "4", "PAYMENT_FILES_CLOCK": PAYMENT_CLOCK,
                "REMEDIATION_RETRY_BASE_SECONDS": "2"}
    # The journeys' spans outlive the demo's in-memory stack: `python -m ops trace` reads them after.
    TRACES.unlink(missing_ok=True)
    stack = Stack(with_devhost=False, settings=settings, traces_db=TRACES, with_view=True)
    try:
        stack.start()
        print(f"Live view (open it now to watch the demo run): {stack.view_url}", flush=True)
        seed_all(stack.storage_connection)
        stack.start_devhost()
        base = f"{stack.functions_url}/api"
        print(f"Stack up; Functions at {base}\n")

        status, problem, _ = request("POST", f"{base}/deliveries", {"ownerId": "", "packageInfo": {"size": "huge"}})
        fields = ", ".join(e.get("field", "") for e in (problem or {}).get("errors", []))
        print(f"A malformed request is refused before anything is published: HTTP {status} "
              f"{(problem or {}).get('title', '')}: {fields}")

        all_cases = cases(count)
        started = time.monotonic()
        for case in all_cases:
            case.body = delivery_body(case)
            status, body, _ = request("POST", f"{base}/deliveries", case.body)
            if status != 202:
                case.problems.append(f"submission answered {status}: {body}")
        repeat = all_cases[0]
        status, _, _ = request("POST", f"{base}/deliveries", repeat.body)
        print(f"Submitted {len(all_cases)} deliveries to a fleet of 5 drones; resubmitting {repeat.delivery_id} "
              f"with the same body answers {status} and starts nothing new.\n")

        pending = {c.delivery_id: c for c in all_cases if not c.problems}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for delivery_id, case in list(pending.items()):
                code, body, _ = request("GET", f"{base}/deliveries/{delivery_id}")
                if code == 200 and body.get("status") in FINAL:
                    case.result = body
                    pending.pop(delivery_id)
            progress(len(all_cases) - len(pending), len(all_cases), started)
            time.sleep(0.3)
        if sys.stdout.isatty():
            print()
        for case in pending.values():
            code, body, _ = request("GET", f"{base}/deliveries/{case.delivery_id}")
            case.result = body if code == 200 else {"status": f"HTTP {code}"}
            case.problems.append(f"did not settle within {timeout:.0f} s")

        print("Journeys (time, service, hop):")
        for case in all_cases:
            if not case.problems:
                check(case)
            print(journey(case, started))
        bad = [c for c in all_cases if c.problems]
        shipped = sum(1 for c in all_cases if (c.result or {}).get("status") == "Shipped")
        print(f"\n{len(all_cases) - len(bad)}/{len(all_cases)} deliveries ended as expected "
              f"({shipped} shipped, {len(all_cases) - shipped} cancelled) in {time.monotonic() - started:.1f} s.")
        bad_files = run_payments(stack, base, timeout)
        repair_problems = run_repair(stack, base, timeout)
        shown = next((c for c in all_cases if (c.result or {}).get("status") == "Shipped"), all_cases[0])
        print(f"\nEvery hop above is a span in one trace per journey (kept in {TRACES.relative_to(ROOT)}). "
              f"See one delivery's:\n  .venv/bin/python -m ops trace {shown.delivery_id}\n"
              "and the choreography map derived from the code:\n  .venv/bin/python -m ops map")
        return 0 if not bad and not bad_files and not repair_problems else 1
    finally:
        stack.stop()


def run_repair(stack: Stack, base: str, timeout: float) -> list[str]:
    """One delivery through a storage outage of the Package service, repaired by remediation."""
    from ops import cli as ops_cli

    print("\nRemediation: Table packages is taken away while one more delivery is submitted")
    case = Case("through a Package storage outage", "small", 2.0, "Shipped")
    problems: list[str] = []
    with TableServiceClient.from_connection_string(stack.storage_connection) as tables:
        tables.delete_table(PACKAGES_TABLE)
        try:
            status, body, _ = request("POST", f"{base}/deliveries", delivery_body(case))
            if status != 202:
                return [f"submission answered {status}: {body}"]
            audit = TableAuditLog(tables.create_table_if_not_exists(REMEDIATIONS_TABLE))
            decided = _wait(lambda: next((e for e in audit.entries(Decision.RETRY)
                                          if e.record.correlation_id == case.delivery_id), None), timeout)
        finally:
            tables.create_table_if_not_exists(PACKAGES_TABLE)
    if decided is None:
        return [f"remediation never decided on {case.delivery_id}"]
    record = decided.record
    print(f"  {record.entity}: {record.reason} ({record.description}); remediation: {decided.verdict.why}, "
          f"in {decided.verdict.delay.total_seconds():.0f} s; the table is back")
    case.result = _wait(lambda: _final(base, case.delivery_id), timeout)
    if case.result is None:
        problems.append(f"{case.delivery_id} did not settle within {timeout:.0f} s")
    else:
        check(case)
        problems += case.problems
        print(journey(case, 0.0))
    print("\nEvery dead letter of this run and what remediation decided (python -m ops dlq list --all):")
    ops_cli.main(["dlq", "--servicebus", stack.servicebus_connection, "--storage", stack.storage_connection,
                  "--admin", stack.servicebus_admin_connection, "--admin-cert", stack.servicebus_admin_certificate,
                  "list", "--all"])
    return problems


def _final(base: str, delivery_id: str) -> dict[str, Any] | None:
    code, body, _ = request("GET", f"{base}/deliveries/{delivery_id}")
    return body if code == 200 and body.get("status") in FINAL else None


def _wait(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.3)
    return None


def run_payments(stack: Stack, base: str, timeout: float) -> list[PaymentCase]:
    """Drop the sample files in ``payment-files-in`` and follow each through the pipeline."""
    print("\nPayment files: dropped into payment-files-in/{clientId}/{fileName}")
    blobs = BlobServiceClient.from_connection_string(stack.storage_connection)
    container = blobs.get_container_client("payment-files-in")
    if not container.exists():
        container.create_container()
    run = uuid.uuid4().hex[:6]
    names = {}
    for case in PAYMENT_CASES:
        name = f"demo-{run}-{case.sample}"
        names[id(case)] = name
        container.upload_blob(f"{case.client}/{name}", (SAMPLES / case.sample).read_bytes())
    deadline = time.monotonic() + timeout
    pending = list(PAYMENT_CASES)
    while pending and time.monotonic() < deadline:
        for case in list(pending):
            code, body, _ = request("GET", f"{base}/payment-files/{case.client}/{names[id(case)]}")
            if code == 200 and body.get("state") in ("Completed", "Rejected"):
                case.result = body
                pending.remove(case)
        time.sleep(0.5)
    for case in pending:
        case.problems.append(f"did not settle within {timeout:.0f} s")
    for case in PAYMENT_CASES:
        result = case.result or {}
        reasons = [r["code"] for r in result.get("reasons", [])] + list(result.get("transactionReasons", {}))
        if result and result.get("state") != case.expect_state:
            case.problems.append(f"ended {result.get('state')!r}, expected {case.expect_state!r}")
        if result and case.expect_group and result.get("groupStatus") != case.expect_group:
            case.problems.append(f"pain.002 status {result.get('groupStatus')!r}, expected {case.expect_group!r}")
        if result and case.expect_reason and case.expect_reason not in reasons:
            case.problems.append(f"reasons {reasons}, expected {case.expect_reason}")
        counts = result.get("counts", {})
        where = result.get("locations", {})
        print(f"{'OK ' if not case.problems else 'BAD'} {case.client}/{case.sample:<22} {case.label}: "
              f"{result.get('state')} {result.get('groupStatus') or ''} "
              f"({counts.get('accepted', 0)} accepted, {counts.get('rejected', 0)} rejected)"
              f"{'  reasons ' + ', '.join(sorted(set(reasons))) if reasons else ''}")
        for kind, location in sorted(where.items()):
            print(f"      {kind:<13} {location}")
        for problem in case.problems:
            print(f"      !! {problem}")
    bad = [c for c in PAYMENT_CASES if c.problems]
    print(f"\n{len(PAYMENT_CASES) - len(bad)}/{len(PAYMENT_CASES)} payment files ended as expected.")
    return bad
