"""One journey, one trace (issue 11): the app's spans, exported over OTLP to the stack's trace
store, follow a delivery from the ``POST`` to its notification and a payment file through its
three steps, across the topic and both subscriptions, the session queue, scheduled messages,
compensation commands, Event Grid and a host crash; ``ops trace`` shows them and ``ops map``'s
declared edges match the edges the journeys took."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date

import pytest

from devstack.samples import generate_csv
from devstack.stack import ROOT
from ops import map as choreography_map
from ops.journey import is_hop
from ops.sources import StoreApi

from .conftest import App, assert_hops_chain, call, delivery, invocations, orphans, start_stack, trace_of
from .test_payment_files import drop, settle

# Declared edges no journey in this module takes, and why: each is taken by a test elsewhere
# (its module's own stack) or needs a fault this module does not make.
UNTESTED = {
    ("drone_scheduler_on_request", "RetryDroneScheduling", "drone_scheduler_on_request"):
        "every drone busy: tests/e2e/test_drone_delivery.py (concurrent deliveries)",
    ("package_on_delivery_requested", "PackageRejected", "delivery_on_event"):
        "an impossible package: tests/e2e/test_drone_delivery.py",
    ("drone_scheduler_on_release_drone", "DroneReleased", "delivery_on_event"):
        "only a compensation is acknowledged (an impossible package: tests/e2e/test_drone_delivery.py); the end "
        "of a flight is not",
    ("ingestion_submit_delivery", "JoinTimeout", "delivery_on_event"):
        "sent on every submission, delivered only after JOIN_TIMEOUT_SECONDS: tests/e2e/test_join_timeout.py",
    ("file_pipeline_adapt", "PaymentFileValidated", "file_pipeline_adapt"): "a transient FileAdaptor failure",
    ("file_pipeline_create", "PaymentFileAdapted", "file_pipeline_create"): "a transient FileCreator failure",
    ("file_pipeline_adapt", "CompensatePaymentFile", "file_pipeline_compensate"):
        "tests/e2e/test_payment_compensation.py (its journey is checked there)",
    ("file_pipeline_create", "CompensatePaymentFile", "file_pipeline_compensate"):
        "tests/e2e/test_payment_compensation.py",
    ("remediation_on_dead_letter", "PackageRejected", "delivery_on_event"):
        "a business failure its service did not compensate: tests/integration/test_remediation.py",
    ("remediation_on_dead_letter", "DroneUnavailable", "delivery_on_event"):
        "a business failure its service did not compensate: tests/integration/test_remediation.py",
}
# Every consumer's dead letters reach remediation: tests/hostile/test_servicebus.py sends every
# consumer a body it cannot read, tests/e2e/test_remediation.py fails one transiently.
DEAD_LETTER_EDGES_ELSEWHERE = choreography_map.DEAD_LETTERS
DELIVERY_FUNCTIONS = {"ingestion_submit_delivery", "package_on_delivery_requested", "drone_scheduler_on_request",
                      "delivery_on_event", "drone_scheduler_on_release_drone", "notifications_on_delivery_event"}


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    stack = start_stack(FLIGHT_TIME_SECONDS="2")
    try:
        yield App(stack)
    finally:
        stack.stop()


def client_span() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def shipped_journey(app: App) -> tuple[str, str, str, list]:
    trace_id, span_id, traceparent = client_span()
    body = delivery("small", 1.0)
    code, _, _ = call("POST", f"{app.api}/deliveries", body, headers={"traceparent": traceparent})
    assert code == 202
    assert app.wait_final(body["deliveryId"])["status"] == "Shipped"

    def complete(spans: list) -> bool:
        names = {s.attributes.get("faas.name") for s in invocations(spans)}
        return names >= DELIVERY_FUNCTIONS and not orphans(spans, span_id)

    return body["deliveryId"], trace_id, span_id, trace_of(app.stack, body["deliveryId"], complete)


def test_a_shipped_delivery_is_one_trace_from_the_post_to_the_notification(app: App) -> None:
    delivery_id, trace_id, client_span_id, spans = shipped_journey(app)
    assert {s.traceId for s in spans} == {trace_id}  # the caller's trace, carried by every hop
    root = invocations(spans, "ingestion_submit_delivery")
    assert len(root) == 1 and root[0].kind == "SERVER" and root[0].parentSpanId == client_span_id
    assert not orphans(spans, client_span_id)
    assert_hops_chain(spans)
    # the topic's two subscriptions each got the request, from the same send
    requested = [s for s in invocations(spans) if s.attributes.get("choreography.message.type") == "DeliveryRequested"]
    assert {s.attributes["faas.name"] for s in requested} == {"package_on_delivery_requested",
                                                             "drone_scheduler_on_request"}
    assert len({s.parentSpanId for s in requested}) == 1
    # the session queue: every Delivery invocation names its session, the delivery id
    for span in invocations(spans, "delivery_on_event"):
        assert span.kind == "CONSUMER"
        assert span.attributes["messaging.servicebus.session.id"] == delivery_id
        assert span.attributes["messaging.system"] == "servicebus"
        assert span.attributes["choreography.outcome"] == "completed"
    # the flight timer: a scheduled message whose consumer is the child of the send that scheduled it
    timer_sends = [s for s in spans if s.kind == "PRODUCER"
                   and s.attributes.get("choreography.message.type") == "DeliveryInTransitTimer"]
    assert len(timer_sends) == 1 and "choreography.scheduled_for" in timer_sends[0].attributes
    landed = [s for s in invocations(spans, "delivery_on_event") if s.parentSpanId == timer_sends[0].spanId]
    assert len(landed) == 1 and landed[0].startNs - timer_sends[0].startNs > 1e9  # it waited for the flight
    # Event Grid: the notification's parent is the send of DeliveryShipped (CloudEvents traceparent)
    notified = invocations(spans, "notifications_on_delivery_event")
    assert len(notified) == 1 and notified[0].attributes["choreography.message.type"] == "DeliveryShipped"
    # storage and broker calls appear as children (azure-core's OpenTelemetry plugin)
    assert any(s.kind == "CLIENT" and s.parentSpanId in {i.spanId for i in invocations(spans)} for s in spans)


def test_a_compensated_delivery_keeps_its_trace_through_the_compensation(app: App) -> None:
    body = delivery("large", 85.0)  # no drone can carry it
    assert app.submit(body)[0] == 202
    assert app.wait_final(body["deliveryId"])["status"] == "Cancelled"

    def complete(spans: list) -> bool:
        return bool(invocations(spans, "notifications_on_delivery_event")) and not orphans(spans)

    spans = trace_of(app.stack, body["deliveryId"], complete)
    assert_hops_chain(spans)
    scheduler = invocations(spans, "drone_scheduler_on_request")
    assert scheduler[0].attributes["choreography.outcome"] == "dead-lettered"
    assert scheduler[0].attributes["choreography.reason_code"] == "NoDroneCanCarryWeight"
    assert scheduler[0].status == "ERROR"
    assert [s for s in spans if s.kind == "PRODUCER" and s.name == "send deadletter"]
    types = [s.attributes.get("choreography.message.type") for s in invocations(spans)]
    if "PackageReady" in types:  # the package was reserved first: it is cancelled
        assert invocations(spans, "package_on_cancel_package")
    assert invocations(spans, "notifications_on_delivery_event")[0].attributes[
        "choreography.message.type"] == "DeliveryFailed"


def test_a_journey_survives_a_host_crash_in_one_trace(app: App) -> None:
    body = delivery("small", 1.0)
    assert app.submit(body)[0] == 202
    app.wait_status(body["deliveryId"], "DroneScheduled")
    time.sleep(1.0)  # the spans so far leave the host (200 ms batches) before it dies
    app.stack.kill_devhost()  # SIGKILL with the flight timer scheduled
    app.stack.start_devhost()
    assert app.wait_final(body["deliveryId"])["status"] == "Shipped"

    def complete(spans: list) -> bool:
        return bool(invocations(spans, "notifications_on_delivery_event"))

    spans = trace_of(app.stack, body["deliveryId"], complete)
    assert len({s.traceId for s in spans}) == 1
    hosts = {s.attributes.get("faas.name") for s in invocations(spans)}
    assert {"ingestion_submit_delivery", "delivery_on_event", "notifications_on_delivery_event"} <= hosts
    # every hop's parent is in the trace; only spans the killed host never exported can be missing
    by_id = {s.spanId for s in spans}
    for span in invocations(spans)[1:]:
        assert span.parentSpanId in by_id or span.attributes["faas.name"] == "ingestion_submit_delivery", span.name


def test_a_step_redelivered_after_its_host_died_mid_run_stays_in_the_trace(app: App) -> None:
    """A handler killed mid-run (SIGKILL of the host while FileAdaptor works through a large file):
    Service Bus delivers its message again, and the second run is a child of the same send."""
    content = io.BytesIO()
    generate_csv(content, 150_000, execution_date=date(2026, 11, 23), prefix="TRC", max_cents=2_000)
    name = drop(app, "ACME001", "large.csv", content.getvalue())

    def validated(spans: list) -> bool:  # FileValidator has ended and handed the file on
        return bool(invocations(spans, "file_pipeline_validate")) and any(
            s.attributes.get("choreography.message.type") == "PaymentFileValidated" for s in spans)

    trace_of(app.stack, f"ACME001/{name}", validated, timeout=120)
    time.sleep(0.5)  # FileAdaptor is at work; its first storage calls leave the host (200 ms batches)
    killed_at = time.time_ns()
    app.stack.kill_devhost()
    app.stack.start_devhost()
    assert settle(app, "ACME001", name, timeout=300)["state"] == "Completed"

    def complete(spans: list) -> bool:
        return bool(invocations(spans, "file_pipeline_create")) and any(
            s.attributes.get("choreography.message.type") == "PaymentFileCreated" for s in spans)

    spans = trace_of(app.stack, f"ACME001/{name}", complete)
    assert len({s.traceId for s in spans}) == 1
    # The killed run: its invocation span died unexported with the host; the storage calls it had
    # finished were exported and now lack their parent. Nothing else may (every hop has its parent).
    lost = orphans(spans)
    assert lost and all(not is_hop(s) for s in lost), [s.name for s in lost]
    assert len({s.parentSpanId for s in lost}) == 1 and all(s.startNs < killed_at for s in lost)
    # The run after the restart: a child of the same PaymentFileValidated send.
    [rerun] = invocations(spans, "file_pipeline_adapt")
    assert rerun.startNs > killed_at
    sends = {s.spanId: s for s in spans if s.kind == "PRODUCER"}
    assert sends[rerun.parentSpanId or ""].attributes["choreography.message.type"] == "PaymentFileValidated"
    assert rerun.attributes["choreography.outcome"] == "completed"
    assert_hops_chain(spans)


def test_a_payment_file_is_one_trace_through_its_three_steps(app: App) -> None:
    name = drop(app, "ACME001", "csv_v1_valid.csv")
    assert settle(app, "ACME001", name)["state"] == "Completed"

    def complete(spans: list) -> bool:
        return bool(invocations(spans, "file_pipeline_create")) and not orphans(spans) and any(
            s.attributes.get("choreography.message.type") == "PaymentFileCreated" for s in spans)

    spans = trace_of(app.stack, f"ACME001/{name}", complete)
    validate, adapt, create = (invocations(spans, f"file_pipeline_{step}") for step in ("validate", "adapt", "create"))
    assert len(validate) == 1 and validate[0].parentSpanId is None  # a blob upload starts the trace
    assert len(adapt) == 1 and len(create) == 1
    assert_hops_chain(spans)
    assert all(s.attributes["choreography.outcome"] == "completed" for s in adapt + create)


def test_ops_trace_prints_the_journey_as_text_and_json_and_exit_2_for_an_unknown_id(app: App) -> None:
    delivery_id, trace_id, _, spans = shipped_journey(app)
    ops = [sys.executable, "-m", "ops", "trace", "--store", app.stack.traces_url]
    text = subprocess.run([*ops, delivery_id], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert trace_id in text.stdout
    for function in DELIVERY_FUNCTIONS:
        assert function in text.stdout, function
    assert "-> DeliveryRequested to deliveries" in text.stdout
    assert "scheduled for" in text.stdout
    as_json = subprocess.run([*ops, delivery_id, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    document = json.loads(as_json.stdout)
    assert document["traceId"] == trace_id and len(document["spans"]) >= len(spans)
    assert set(document["spans"][0]) == {"traceId", "spanId", "parentSpanId", "name", "service", "kind", "start",
                                         "durationMs", "status", "attributes"}
    unknown = subprocess.run([*ops, "no-such-delivery"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "no trace names 'no-such-delivery'" in unknown.stderr
    observed = subprocess.run([sys.executable, "-m", "ops", "map", "--observed", "--store", app.stack.traces_url],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert observed.returncode == 0, observed.stdout + observed.stderr  # 1: an edge the code does not declare
    assert observed.stdout.startswith("flowchart LR")
    assert '-->|"DeliveryRequested n=' in observed.stdout and " p99 " in observed.stdout


def test_zz_the_declared_map_matches_the_edges_the_journeys_took(app: App) -> None:
    """Runs last in the module: every edge observed here is declared, and every declared edge was
    observed here or is listed in UNTESTED with where it is exercised."""
    declared = choreography_map.derive().pairs()
    observed = set(choreography_map.observe(StoreApi(app.stack.traces_url).spans(1_000_000)).edges)
    assert observed, "no edges observed"
    assert not observed - declared, f"observed but not declared: {sorted(observed - declared)}"
    missing = {edge for edge in declared - observed - set(UNTESTED) if edge[1] != DEAD_LETTER_EDGES_ELSEWHERE}
    assert not missing, f"declared, never observed, not listed as untested: {sorted(missing)}"
