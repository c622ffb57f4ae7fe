"""The payment-file pipeline's steps composed on one set of ports: FileValidator -> FileAdaptor
-> FileCreator, the compensation that undoes them, and the status query, one module each in
:mod:`file_pipeline.steps`. No ``azure.*`` here: storage comes in through
:mod:`file_pipeline.ports`, messages through :class:`choreography.messaging.Publisher`, events
through :class:`choreography.messaging.EventPublisher`.

Idempotency, step by step (what a repeat of the same input does):

* **FileValidator** (blob trigger): the file id is derived from the blob version (name + ETag).
  A repeat finds the record: ``Validated`` -> the hand-off is sent again (same message id, the
  queue drops it); ``Rejected``/``Completed`` -> only an announcement that did not finish is
  finished; anything later -> nothing. ``Validating`` (a crash mid-way) -> validated again.
* **FileAdaptor** / **FileCreator** (Service Bus): the state is checked before acting. The
  step's state change is saved (with the record's ETag) *before* the hand-off is sent, and a
  repeat in the saved state only re-sends the hand-off. FileCreator in ``Completed`` does
  nothing (no second output); it only finishes an unfinished announcement.
* Duplicate files (``DU01``): the content hash and the client's MsgId are claimed in the same
  atomic Table batch that records the file ``Validated``, so two identical uploads racing each
  other cannot both pass.
* Daily limits (:mod:`file_pipeline.domain.daily`): the client's day totals are read before the
  file is validated, and the file's own amounts are added to them in that same batch, each total
  guarded by its ETag. If another file of the client moved a total meanwhile, the totals are
  read again: when the file's verdict cannot change (nothing was refused for a daily limit and
  its amounts still fit), the batch is written again on them; otherwise the conflict is raised
  and the trigger's retry validates the file again on the fresh totals. Compensation subtracts
  the amounts in the batch that clears them from the record.

Failures, classified once (see :class:`~file_pipeline.steps.consumers.StepConsumer`):

* A file the rules refuse is *rejected* by FileValidator: pain.002 ``RJCT`` with every reason,
  the upload moved to ``payment-files-rejected/{clientId}/{fileId}/{fileName}`` (one name per
  blob version, so a second rejection of the same upload name keeps the first one's evidence),
  the record ``Rejected``, a copy of the rejection on the app's dead-letter queue (reason = ISO
  code) and ``PaymentFileRejected``.
* A later step that fails for good (:class:`~choreography.errors.PermanentFailure`, a corrupt
  work file, an output failing the XSD, or an error still there on the last of its attempts)
  asks for compensation (``CompensatePaymentFile``) and its message is dead-lettered with the
  reason. :class:`~file_pipeline.steps.compensate.Compensation` then undoes: duplicate claims
  released, any output deleted, work files deleted, the upload quarantined, pain.002 ``RJCT``, record
  ``Rejected``, ``PaymentFileRejected``.
* Anything else in FileAdaptor or FileCreator is transient, and is retried *later*: a copy of
  the message, its ``attempt`` counted, is scheduled after a growing delay and the message is
  completed (:class:`~file_pipeline.steps.consumers.StepConsumer`). The broker's own redelivery
  is immediate, so five failures
  in a row could otherwise use up ``MaxDeliveryCount`` within a second of an outage; and the
  broker also counts the deliveries a crash or a lock that ran out used, so a step that was
  merely slow could be judged failed for good. An error in a run that another run of the same
  message finished meanwhile (a lock that ran out, then a redelivery) is no failure at all.
  FileValidator's transient errors are raised: the blob trigger retries, then poisons.
"""

from __future__ import annotations

from choreography.clock import Clock
from choreography.messaging import EventPublisher, Publisher
from contracts.payment_files import PaymentFileAdapted, PaymentFileValidated
from file_pipeline.domain.files import Step
from file_pipeline.ports import BlobStore, FileRecords, ReferenceSource

from .steps.adapt import FileAdaptor
from .steps.compensate import Compensation, CompensationConsumer
from .steps.consumers import StepConsumer
from .steps.create import FileCreator
from .steps.shared import CachedReference, Options, Ports
from .steps.status import StatusQuery
from .steps.validate import FileValidator

__all__ = ["Options", "PaymentFilePipeline"]


class PaymentFilePipeline:
    """Every step of the pipeline on the same ports and the same cached reference table:
    ``validate`` for the blob trigger, ``adaptor`` / ``creator`` / ``compensation`` for
    :func:`choreography.handling.consume`, ``status`` for the HTTP query."""

    def __init__(self, *, blobs: BlobStore, records: FileRecords, reference: ReferenceSource, publisher: Publisher,
                 events: EventPublisher, clock: Clock, options: Options, rules_clock: Clock | None = None) -> None:
        """``clock`` stamps records and reports; ``rules_clock`` (default: ``clock``) is the instant
        execution dates and cut-offs are judged at, and the creation time of the pain.001."""
        ports = Ports(blobs=blobs, records=records, reference=CachedReference(reference), publisher=publisher,
                      events=events, clock=clock, rules_clock=rules_clock or clock, options=options)
        self.validator = FileValidator(ports)
        self.adaptor_step = FileAdaptor(ports)
        self.creator_step = FileCreator(ports)
        self.compensator = Compensation(ports)
        self.validate = self.validator.validate
        self.adaptor = StepConsumer(self.adaptor_step, Step.ADAPTOR, PaymentFileValidated, self.adaptor_step.adapt)
        self.creator = StepConsumer(self.creator_step, Step.CREATOR, PaymentFileAdapted, self.creator_step.create)
        self.compensation = CompensationConsumer(self.compensator)
        self.compensate = self.compensator.compensate
        self.request_compensation = self.compensator.request_compensation
        self.status = StatusQuery(records).status
        self.publisher = publisher
        self.options = options
        self.reference = self.validator.reference
