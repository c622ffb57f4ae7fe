"""A recording publisher and a harness that runs the use cases the way the Functions host would
(blob trigger, then each queue's consumer via ``consume``) on the ports' in-memory fakes
(:mod:`fakes.file_pipeline`, shared with the benchmarks)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from choreography.clock import FixedClock
from choreography.contracts import Envelope
from choreography.entities import (
    ADAPTED_QUEUE,
    COMPENSATION_QUEUE,
    INPUT_CONTAINER,
    OUTPUT_CONTAINER,
    REPORTS_CONTAINER,
    VALIDATED_QUEUE,
)
from choreography.handling import consume
from choreography.messaging import Cause, DeadLetter, Incoming, Outgoing, stamp
from fakes.file_pipeline import FakeBlobStore, FakeFileRecords, FakeReferenceSource, RecordingEvents
from file_pipeline.domain.files import PaymentFile
from file_pipeline.domain.reference import ReferenceData
from file_pipeline.service import Options, PaymentFilePipeline
from file_pipeline.steps.validate import Upload

from .conftest import NOW


# ---------------------------------------------------------------------------------------------- messaging
@dataclass
class Sent:
    destination: str
    outgoing: Outgoing
    envelope: Envelope

    def incoming(self, delivery_count: int = 1) -> Incoming:
        return Incoming(body=self.envelope.to_json().encode(), message_id=self.outgoing.message_id,
                        source=self.destination, subject=self.envelope.type,
                        correlation_id=self.envelope.correlation_id, content_type="application/json",
                        application_properties=self.envelope.properties(), delivery_count=delivery_count)


class RecordingPublisher:
    """The Publisher port in memory. Queues drop a message whose id they already hold, as Service
    Bus duplicate detection does; ``pending`` is what a consumer has not yet taken."""

    def __init__(self, clock: FixedClock | None = None) -> None:
        self.clock = clock or FixedClock(NOW)
        self.sent: list[Sent] = []
        self.pending: dict[str, list[Sent]] = {}
        self._seen: dict[str, set[str]] = {}
        self.dead_letters: list[DeadLetter] = []
        self.fail_send: Callable[[str], Exception | None] = lambda destination: None

    def send(self, messages: Sequence[Outgoing], cause: Cause) -> list[Envelope]:
        envelopes = []
        for message in messages:
            failure = self.fail_send(message.destination.name)
            if failure is not None:
                raise failure
            envelope = stamp(message, cause, self.clock.now())
            envelopes.append(envelope)
            sent = Sent(message.destination.name, message, envelope)
            self.sent.append(sent)
            seen = self._seen.setdefault(message.destination.name, set())
            if message.message_id not in seen:
                seen.add(message.message_id)
                self.pending.setdefault(message.destination.name, []).append(sent)
        return envelopes

    def dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)

    def take(self, destination: str) -> Sent | None:
        queue = self.pending.get(destination) or []
        return queue.pop(0) if queue else None

    def accepted(self, destination: str) -> list[Sent]:
        """Messages the queue kept (duplicates dropped), taken or not."""
        seen: set[str] = set()
        out = []
        for sent in self.sent:
            if sent.destination == destination and sent.outgoing.message_id not in seen:
                seen.add(sent.outgoing.message_id)
                out.append(sent)
        return out


# ---------------------------------------------------------------------------------------------- harness
@dataclass
class Harness:
    blobs: FakeBlobStore = field(default_factory=FakeBlobStore)
    records: FakeFileRecords = field(default_factory=FakeFileRecords)
    reference: FakeReferenceSource = field(default_factory=FakeReferenceSource)
    clock: FixedClock = field(default_factory=lambda: FixedClock(NOW))
    max_bytes: int = 1 << 20
    max_attempts: int = 6

    def __post_init__(self) -> None:
        self.publisher = RecordingPublisher(self.clock)
        self.events = RecordingEvents()
        self.pipeline = PaymentFilePipeline(
            blobs=self.blobs, records=self.records, reference=self.reference, publisher=self.publisher,
            events=self.events, clock=self.clock, options=Options(self.max_bytes, max_attempts=self.max_attempts))

    def upload(self, client: str, name: str, data: bytes) -> Upload:
        full = f"{client}/{name}"
        etag = self.blobs.put(INPUT_CONTAINER, full, data)
        return Upload(INPUT_CONTAINER, full, len(data), etag, io.BytesIO(data))

    def deliver(self, queue: str, delivery_count: int = 1, sent: Sent | None = None) -> Sent | None:
        """The next message of ``queue`` through its consumer, as the host would; None if empty."""
        sent = sent or self.publisher.take(queue)
        if sent is None:
            return None
        consumer = {VALIDATED_QUEUE.name: self.pipeline.adaptor, ADAPTED_QUEUE.name: self.pipeline.creator,
                    COMPENSATION_QUEUE.name: self.pipeline.compensation}[queue]
        consume(sent.incoming(delivery_count), consumer, self.publisher)
        return sent

    def run(self) -> None:
        """Deliver until every pipeline queue is empty."""
        while any(self.deliver(q) for q in (VALIDATED_QUEUE.name, ADAPTED_QUEUE.name, COMPENSATION_QUEUE.name)):
            pass

    def submit(self, client: str, name: str, data: bytes) -> PaymentFile:
        """Upload, validate, run the pipeline to the end; the file's record."""
        upload = self.upload(client, name, data)
        self.pipeline.validate(upload)
        self.run()
        record, _ = self.records.latest(client, name)
        assert record is not None
        return record


def state_of(records: Any, record: PaymentFile) -> str:
    current = records.get(record.client_id, record.file_id)
    return current.state.value if current else "missing"


@dataclass
class Processed:
    """One file through the three steps on a fresh harness, as the functions run it: its record
    and what it left in storage (the pain.001, the pain.002, the error report), None if absent."""

    record: PaymentFile
    pain001: bytes | None
    pain002: bytes | None
    error_report: bytes | None


def process(content: bytes, client: str, *, name: str = "file", reference: ReferenceData | None = None) -> Processed:
    h = Harness(reference=FakeReferenceSource(reference))
    record = h.submit(client, name, content)

    def stored(container: str, blob_name: str) -> bytes | None:
        blob = h.blobs.blobs.get((container, f"{client}/{blob_name}"))
        return blob.data if blob is not None else None

    return Processed(record, stored(OUTPUT_CONTAINER, f"{record.file_id}.xml"),
                     stored(REPORTS_CONTAINER, f"{record.file_id}.xml"),
                     stored(REPORTS_CONTAINER, f"{record.file_id}.errors.csv"))
