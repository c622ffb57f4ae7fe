"""Remediation end to end (devhost, Azurite, both emulators): a delivery whose Package step fails
transiently until Service Bus gives up is retried by remediation once the fault clears and ships
in one trace; a message nobody can read is parked and listed by ``ops dlq``; a parked message
resubmitted by ``ops dlq resubmit`` after the fix finishes its delivery.

The transient fault is Table ``packages`` missing (as when storage is down for the Package
service only): every attempt fails until the table is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from choreography.entities import PACKAGES_TABLE
from devstack.stack import ROOT
from remediation.domain import AuditEntry, Decision, Outcome

from .conftest import App, delivery, invocations, start_stack, trace_of

PACKAGE = "deliveries/subscriptions/package"


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    stack = start_stack(REMEDIATION_MAX_ATTEMPTS="1", REMEDIATION_RETRY_BASE_SECONDS="2")
    try:
        app = App(stack)
        warm = delivery()  # the Package service is built and holds its table client from now on
        assert app.submit(warm)[0] == 202
        assert app.wait_final(warm["deliveryId"])["status"] == "Shipped"
        yield app
    finally:
        stack.stop()


def packages_table(app: App, present: bool) -> None:
    with TableServiceClient.from_connection_string(app.stack.storage_connection) as tables:
        if present:
            tables.create_table_if_not_exists(PACKAGES_TABLE)
        else:
            tables.delete_table(PACKAGES_TABLE)


def ops(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ServiceBusConnection": app.stack.servicebus_connection,
           "AzureWebJobsStorage": app.stack.storage_connection,
           "ServiceBusAdminConnection": app.stack.servicebus_admin_connection,
           "ServiceBusAdminCertificate": app.stack.servicebus_admin_certificate}
    return subprocess.run([sys.executable, "-m", "ops", "dlq", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_ops_dlq_lists_a_parked_message_from_the_audit_and_says_what_it_could_not_see(app: App) -> None:
    """Without the administration API (here: an endpoint nobody serves; in Azure, an identity
    without Manage rights), `ops dlq list` still lists the parked messages and says what it left out."""
    correlation = f"e2e-{uuid.uuid4().hex[:12]}"
    with ServiceBusClient.from_connection_string(app.stack.servicebus_connection) as client, \
            client.get_topic_sender("deliveries") as sender:
        sender.send_messages(ServiceBusMessage(b"{not json", message_id=f"garbage-{correlation}",
                                               subject="DeliveryRequested", correlation_id=correlation))
    app.wait_remediation(lambda e: e.record.correlation_id == correlation and e.record.entity == PACKAGE
                         and e.verdict.decision is Decision.PARK, "the parked message")
    nobody = "Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
    listed = ops(app, "--admin", nobody, "list", "--correlation-id", correlation, "--json")
    letters = json.loads(listed.stdout)
    assert PACKAGE in {x["entity"] for x in letters}
    assert {(x["state"], x["reason"]) for x in letters} == {("parked", "MalformedMessage")}
    assert listed.returncode == 1 and "administration API cannot be used" in listed.stderr
    shown = ops(app, "--admin", nobody, "show", letters[0]["id"])
    assert '"body": "{not json"' in shown.stdout
    refused = ops(app, "purge", "--yes")
    assert refused.returncode == 2 and "needs a filter" in refused.stderr


def about(delivery_id: str, decision: Decision) -> Any:
    def matches(entry: AuditEntry) -> bool:
        return entry.record.correlation_id == delivery_id and entry.verdict.decision is decision

    return matches


def test_a_transient_failure_outliving_its_deliveries_is_retried_by_remediation_and_ships(app: App) -> None:
    packages_table(app, present=False)
    request = delivery()
    delivery_id = request["deliveryId"]
    try:
        assert app.submit(request)[0] == 202
        retry = app.wait_remediation(about(delivery_id, Decision.RETRY), f"the dead letter of {delivery_id}")
    finally:
        packages_table(app, present=True)  # the fault clears
    assert retry.record.entity == PACKAGE and retry.record.reason == "MaxDeliveryCountExceeded"
    assert retry.record.delivery_count == 5 and retry.verdict.attempt == 1
    assert app.wait_final(delivery_id)["status"] == "Shipped"

    spans = trace_of(app.stack, delivery_id, lambda s: bool(invocations(s, "notifications_on_delivery_event"))
                     and bool(invocations(s, "remediation_on_dead_letter")))
    package_runs = invocations(spans, "package_on_delivery_requested")
    assert len(package_runs) >= 6  # five that failed, the resubmitted one that succeeded
    assert [s.attributes.get("choreography.outcome") for s in package_runs].count("completed") == 1
    [decided] = invocations(spans, "remediation_on_dead_letter")
    assert decided.attributes["remediation.decision"] == "retry"


def test_a_message_nobody_can_read_is_parked_and_listed_by_ops_dlq(app: App) -> None:
    correlation = f"e2e-{uuid.uuid4().hex[:12]}"
    with ServiceBusClient.from_connection_string(app.stack.servicebus_connection) as client, \
            client.get_topic_sender("deliveries") as sender:
        sender.send_messages(ServiceBusMessage(b"{not json", message_id=f"garbage-{correlation}",
                                               subject="DeliveryRequested", correlation_id=correlation))
    for entity in (PACKAGE, "deliveries/subscriptions/drone-scheduler"):
        app.wait_remediation(lambda e, entity=entity: e.record.correlation_id == correlation  # type: ignore[misc]
                             and e.record.entity == entity and e.verdict.decision is Decision.PARK,
                             f"the parked message of {entity}")
    listed = ops(app, "list", "--correlation-id", correlation, "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert sorted(x["entity"] for x in letters) == sorted([PACKAGE, "deliveries/subscriptions/drone-scheduler"])
    assert {(x["state"], x["reason"], x["messageType"]) for x in letters} == {
        ("parked", "MalformedMessage", "DeliveryRequested")}
    assert all(x["description"] and x["deliveryCount"] == 1 for x in letters)

    text = ops(app, "list", "--reason", "MalformedMessage", "--entity", PACKAGE)
    assert text.returncode == 0 and correlation in text.stdout and "drone-scheduler" not in text.stdout
    shown = ops(app, "show", letters[0]["id"])
    assert shown.returncode == 0 and '"body": "{not json"' in shown.stdout

    # operator mistakes: exit 2 with the reason, nothing done
    for args, words in ((("list", "--older-than", "7x"), "not a duration"),
                        (("list", "--entity", "no-such-queue"), "no queue or subscription 'no-such-queue'"),
                        (("purge", "--yes"), "needs a filter"),
                        (("purge", "--correlation-id", correlation), "confirm with --yes")):
        refused = ops(app, *args)
        assert refused.returncode == 2 and words in refused.stderr, (args, refused.stdout, refused.stderr)
    assert ops(app, "show", "no-such-letter").returncode == 1

    purged = ops(app, "purge", "--correlation-id", correlation, "--yes")
    assert purged.returncode == 0 and "purged 2" in purged.stdout
    assert json.loads(ops(app, "list", "--correlation-id", correlation, "--json").stdout) == []
    outcomes = {e.outcome for e in app.remediations() if e.record.correlation_id == correlation}
    assert outcomes == {Outcome.PURGED}


def test_a_parked_delivery_resubmitted_by_ops_dlq_after_the_fix_ships(app: App) -> None:
    packages_table(app, present=False)
    request = delivery()
    delivery_id = request["deliveryId"]
    try:
        assert app.submit(request)[0] == 202
        # REMEDIATION_MAX_ATTEMPTS=1: one resubmission fails too, and the message is parked
        parked = app.wait_remediation(about(delivery_id, Decision.PARK), f"the parked message of {delivery_id}")
    finally:
        packages_table(app, present=True)  # the fix
    assert parked.record.reason == "MaxDeliveryCountExceeded" and parked.record.attempt == 1
    [listed] = json.loads(ops(app, "list", "--correlation-id", delivery_id, "--json").stdout)
    assert listed["state"] == "parked" and listed["entity"] == PACKAGE and listed["attempts"] == 1

    resubmitted = ops(app, "resubmit", listed["id"])
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert f"to {PACKAGE}" in resubmitted.stdout
    assert app.wait_final(delivery_id)["status"] == "Shipped"
    entry = next(e for e in app.remediations() if e.record.message_id == listed["id"])
    assert entry.outcome is Outcome.RESUBMITTED and "by an operator" in entry.note
    assert json.loads(ops(app, "list", "--correlation-id", delivery_id, "--json").stdout) == []
