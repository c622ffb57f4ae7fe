"""``python -m ops dlq``: every dead letter and every parked message, in one list; show one;
resubmit to the entity it failed in (and only there); purge with a filter.

Where a dead letter can be:

* **parked** (or another decision, with ``--all``): remediation decided on it; Table
  ``remediations`` keeps the message, the reason and the decision;
* **undecided**: in queue ``deadletter``, not yet taken by remediation (is the app running?);
* **dead-lettered**: in an entity's own ``$DeadLetterQueue`` (a queue that does not forward, or
  ``deadletter``'s own: remediation itself kept failing on it).

Entities and their dead-letter counts come from ``ServiceBusAdministrationClient``, so the
same command works against the local emulator and a real namespace: only the connection strings
(``ServiceBusConnection``, ``AzureWebJobsStorage``) change. In Azure the administration API is
the namespace's own; the local emulator serves it on a port of its own (5300) with a self-signed
certificate: ``ServiceBusAdminConnection`` names that endpoint and ``ServiceBusAdminCertificate``
the certificate to trust (``make up`` prints both).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.management import ServiceBusAdministrationClient

from choreography.entities import DEADLETTER_QUEUE, REMEDIATIONS_TABLE
from choreography.idempotency import message_id
from choreography.messaging import Incoming, text
from choreography.publishing import ServiceBusPublisher
from remediation.adapters import TableAuditLog
from remediation.domain import AuditEntry, DeadLetterRecord, Decision, Outcome, Verdict, read
from remediation.service import resubmission

ROOT = Path(__file__).resolve().parents[1]
PARKED, UNDECIDED, DEAD_LETTERED = "parked", "undecided", "dead-lettered"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class DlqError(RuntimeError):
    """A problem the operator must fix (exit 2): the message says what."""


def duration(raw: str) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w``."""
    found = _DURATION.match(raw.strip())
    if not found:
        raise DlqError(f"{raw!r} is not a duration: use a number and one of s, m, h, d, w (e.g. 7d)")
    return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


def setting(name: str, given: str | None = None) -> str:
    """A connection string: the option, else the environment, else ``local.settings.json`` (as
    ``func start`` reads it), else the committed emulator defaults."""
    value = optional_setting(name, given)
    if value is None:
        raise DlqError(f"no {name}: pass it as an option or set the app setting in the environment")
    return value


def optional_setting(name: str, given: str | None = None) -> str | None:
    if given:
        return given
    if os.environ.get(name):
        return os.environ[name]
    for file in (Path.cwd() / "local.settings.json", ROOT / "local.settings.json",
                 ROOT / "local.settings.json.example"):
        try:
            value = json.loads(file.read_text()).get("Values", {}).get(name)
        except (OSError, ValueError):
            continue
        if value:
            return str(value)
    return None


@dataclass(frozen=True)
class Letter:
    """One dead letter, wherever it is."""

    state: str  # parked | undecided | dead-lettered | retry | compensate | close (with --all)
    record: DeadLetterRecord
    location: str  # "remediations", "deadletter", "<entity>/$DeadLetterQueue"
    outcome: str = ""
    why: str = ""
    sequence_number: int | None = None

    @property
    def id(self) -> str:
        return self.record.message_id

    def age(self, now: datetime) -> timedelta | None:
        at = self.record.last_failure_at
        return now - at if at else None

    def to_json(self, now: datetime) -> dict[str, Any]:
        age = self.age(now)
        r = self.record
        return {"id": r.message_id, "state": self.state, "location": self.location, "entity": r.entity,
                "reason": r.reason, "description": r.description, "deliveryCount": r.delivery_count,
                "ageSeconds": round(age.total_seconds(), 1) if age is not None else None,
                "correlationId": r.correlation_id, "messageType": r.message_type,
                "originalMessageId": r.original_message_id, "attempts": r.attempt,
                "firstFailureAt": _iso(r.first_failure_at), "lastFailureAt": _iso(r.last_failure_at),
                "traceparent": r.traceparent, "outcome": self.outcome or None, "why": self.why or None}


@dataclass
class Filter:
    entity: str | None = None
    reason: str | None = None
    correlation_id: str | None = None
    older_than: timedelta | None = None
    younger_than: timedelta | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def empty(self) -> bool:
        return not any((self.entity, self.reason, self.correlation_id, self.older_than, self.younger_than))

    def __call__(self, letter: Letter) -> bool:
        r = letter.record
        age = letter.age(self.now)
        return ((self.entity is None or r.entity.lower() == self.entity.lower())
                and (self.reason is None or r.reason == self.reason)
                and (self.correlation_id is None or r.correlation_id == self.correlation_id)
                and (self.older_than is None or (age is not None and age >= self.older_than))
                and (self.younger_than is None or (age is not None and age <= self.younger_than)))


ADMIN_CONNECTION = "ServiceBusAdminConnection"
ADMIN_CERTIFICATE = "ServiceBusAdminCertificate"


class DeadLetters:
    """The dead letters of one namespace and its remediation audit. ``admin``: the administration
    API's connection string when it is not the namespace's own (the local emulator's port);
    ``admin_certificate``: a PEM file to trust for it (the emulator's self-signed one)."""

    def __init__(self, servicebus: str, storage: str, admin: str | None = None,
                 admin_certificate: str | None = None) -> None:
        self._servicebus = servicebus
        self._client = ServiceBusClient.from_connection_string(servicebus)
        if admin_certificate and not Path(admin_certificate).exists() and (ROOT / admin_certificate).exists():
            # local.settings.json names the emulator's certificate relative to the checkout
            admin_certificate = str(ROOT / admin_certificate)
        verify: dict[str, Any] = {"connection_verify": admin_certificate} if admin_certificate else {}
        self._admin = ServiceBusAdministrationClient.from_connection_string(admin or servicebus, **verify)
        self._tables = TableServiceClient.from_connection_string(storage)
        self.audit = TableAuditLog(self._tables.get_table_client(REMEDIATIONS_TABLE))
        self.warnings: list[str] = []

    def close(self) -> None:
        self._client.close()
        self._admin.close()
        self._tables.close()

    def __enter__(self) -> DeadLetters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- where dead letters are ------------------------------------------------------------------
    def entities(self) -> dict[str, int]:
        """Every queue and subscription, with the count of its own dead-letter queue."""
        found: dict[str, int] = {}
        try:
            for queue in self._admin.list_queues_runtime_properties():
                found[queue.name] = queue.dead_letter_message_count or 0
            for topic in self._admin.list_topics():
                for subscription in self._admin.list_subscriptions_runtime_properties(topic.name):
                    found[f"{topic.name}/subscriptions/{subscription.name}"] = (
                        subscription.dead_letter_message_count or 0)
        except AzureError as exc:
            # e.g. a Listen-only identity, or a local emulator whose administration port and
            # certificate were not given (--admin, --admin-cert)
            raise DlqError(f"the Service Bus administration API cannot be used ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]})") from None
        return found

    def check_entity(self, entity: str | None) -> None:
        if entity is None:
            return
        known = self.entities()
        if entity.lower() not in {name.lower() for name in known}:
            raise DlqError(f"no queue or subscription {entity!r} in this namespace; there are: "
                           f"{', '.join(sorted(known))}")

    def letters(self, include_all: bool = False) -> list[Letter]:
        """Every dead letter this can see; what it could not look at is in :attr:`warnings`."""
        found = list(self._audited(include_all))
        found += [Letter(UNDECIDED, _record(m, DEADLETTER_QUEUE.name, queued=True), DEADLETTER_QUEUE.name,
                         sequence_number=m.sequence_number) for m in self._peek(DEADLETTER_QUEUE.name, False)]
        try:
            entities = self.entities()
        except DlqError as exc:
            self.warnings.append(f"the entities' own dead-letter queues are not listed: {exc}")
            entities = {}
        for entity, count in entities.items():
            if count:
                found += [Letter(DEAD_LETTERED, _record(m, entity, queued=False), f"{entity}/$DeadLetterQueue",
                                 sequence_number=m.sequence_number) for m in self._peek(entity, True)]
        return found

    def _audited(self, include_all: bool) -> Iterator[Letter]:
        try:
            entries = list(self.audit.entries(None if include_all else Decision.PARK))
        except ResourceNotFoundError:  # remediation never ran here: no table yet
            return
        for entry in entries:
            if not include_all and entry.outcome in (Outcome.RESUBMITTED, Outcome.PURGED):
                continue
            state = PARKED if entry.verdict.decision is Decision.PARK else entry.verdict.decision.value
            yield Letter(state, entry.record, REMEDIATIONS_TABLE, entry.outcome.value, entry.verdict.why)

    def _peek(self, entity: str, dead_letter: bool) -> list[ServiceBusReceivedMessage]:
        topic, _, subscription = entity.partition("/subscriptions/")
        sub_queue = ServiceBusSubQueue.DEAD_LETTER if dead_letter else None
        receiver = (self._client.get_subscription_receiver(topic, subscription, sub_queue=sub_queue) if subscription
                    else self._client.get_queue_receiver(topic, sub_queue=sub_queue))
        found: list[ServiceBusReceivedMessage] = []
        with receiver:
            sequence = 0
            while batch := receiver.peek_messages(max_message_count=250, sequence_number=sequence):
                found += batch
                sequence = max(m.sequence_number or 0 for m in batch) + 1
        return found

    def find(self, letter_id: str) -> Letter:
        matches = [x for x in self.letters(include_all=True)
                   if letter_id in (x.id, x.record.original_message_id)]
        current = [x for x in matches if x.outcome not in (Outcome.RESUBMITTED.value, Outcome.PURGED.value)]
        if not matches:
            raise LookupError(f"no dead letter {letter_id!r} (by its id or its original message id)")
        return (current or matches)[0]

    # -- acting ----------------------------------------------------------------------------------
    def resubmit(self, letter: Letter, now: datetime) -> str:
        """``letter`` back to the entity it failed in; returns the copy's message id."""
        if letter.state == UNDECIDED:
            raise DlqError(f"{letter.id} is still waiting for remediation to decide on it (is the app running?)")
        copy = resubmission(letter.record, letter.record.attempt, None)
        copy = replace(copy, message_id=message_id("resubmit", "ops", letter.id))
        publisher = ServiceBusPublisher(self._servicebus)
        try:
            publisher.resubmit(copy)
        finally:
            publisher.close()
        self._settle(letter, Outcome.RESUBMITTED, f"resubmitted by an operator at {now.isoformat()} as "
                                                  f"{copy.message_id}", now)
        return copy.message_id

    def purge(self, letter: Letter, now: datetime) -> None:
        self._settle(letter, Outcome.PURGED, f"purged by an operator at {now.isoformat()}", now)

    def _settle(self, letter: Letter, outcome: Outcome, note: str, now: datetime) -> None:
        """The audit says what the operator did; a letter still in a queue leaves it."""
        if letter.location == REMEDIATIONS_TABLE:
            self.audit.set_outcome(letter.id, outcome, note)
            return
        self._take(letter)
        entry = AuditEntry(letter.record, Verdict(Decision.PARK, f"{letter.state} in {letter.location}",
                                                  letter.record.attempt), now, outcome, note)
        self._tables.create_table_if_not_exists(REMEDIATIONS_TABLE)
        if not self.audit.add(entry):
            self.audit.set_outcome(letter.id, outcome, note)

    def _take(self, letter: Letter) -> None:
        """Remove ``letter`` from the queue it waits in (receive it by its sequence number)."""
        entity = letter.location.removesuffix("/$DeadLetterQueue")
        topic, _, subscription = entity.partition("/subscriptions/")
        sub_queue = ServiceBusSubQueue.DEAD_LETTER if letter.location.endswith("$DeadLetterQueue") else None
        receiver = (self._client.get_subscription_receiver(topic, subscription, sub_queue=sub_queue,
                                                           max_wait_time=2) if subscription
                    else self._client.get_queue_receiver(topic, sub_queue=sub_queue, max_wait_time=2))
        with receiver:
            for _ in range(100):
                batch = receiver.receive_messages(max_message_count=50, max_wait_time=2)
                if not batch:
                    break
                for message in batch:
                    if message.sequence_number == letter.sequence_number:
                        receiver.complete_message(message)
                        return
                    receiver.abandon_message(message)
        raise DlqError(f"{letter.id} is no longer in {letter.location} (taken by someone else?)")


def _record(message: ServiceBusReceivedMessage, entity: str, queued: bool) -> DeadLetterRecord:
    """A message peeked from ``deadletter`` (read as remediation reads it) or from ``entity``'s
    own dead-letter queue (it failed there)."""
    incoming = Incoming(
        body=b"".join(message.body) if message.body is not None else b"", message_id=str(message.message_id or ""),
        source=entity, subject=message.subject, session_id=message.session_id,
        correlation_id=message.correlation_id, content_type=message.content_type,
        application_properties={text(k) or "": v for k, v in (message.application_properties or {}).items()},
        delivery_count=(message.delivery_count or 0) + 1, enqueued_at=message.enqueued_time_utc,
        dead_letter_source=message.dead_letter_source if queued else entity)
    record = read(incoming)
    if not queued and record.entity == "unknown":
        record = replace(record, entity=entity)
    return record


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- output -------------------------------------------------------------------------------------
def _age(age: timedelta | None) -> str:
    if age is None:
        return "-"
    seconds = age.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def table(letters: Sequence[Letter], now: datetime) -> str:
    rows = [("STATE", "ENTITY", "REASON", "COUNT", "AGE", "CORRELATION", "TYPE", "ID", "DESCRIPTION")]
    for x in sorted(letters, key=lambda x: (x.record.last_failure_at or now), reverse=True):
        r = x.record
        rows.append((x.state, r.entity, r.reason, str(r.delivery_count if r.delivery_count is not None else "-"),
                     _age(x.age(now)), r.correlation_id or "-", r.message_type or "-", r.message_id,
                     r.description[:60]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in rows]
    return "\n".join(lines)


def show(letter: Letter, now: datetime) -> str:
    details = letter.to_json(now)
    try:
        body: Any = json.loads(letter.record.body)
    except ValueError:
        body = letter.record.body.decode("utf-8", "replace")
    properties = {k: text(v) if isinstance(v, bytes) else v for k, v in letter.record.properties.items()}
    return json.dumps({**details, "properties": properties, "body": body}, indent=2, default=str)

