"""FileAdaptor's and FileCreator's side of their queues: failures classified once, transient
ones tried again later."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from choreography import telemetry
from choreography.contracts import Contract, ContractRegistry
from choreography.errors import PermanentFailure
from choreography.handling import unexpected
from choreography.messaging import (
    Cause,
    Incoming,
    Received,
)
from choreography.reason_codes import ReasonCode as AppReason
from contracts.payment_files import (
    PaymentFileAdapted,
    PaymentFileValidated,
)
from file_pipeline.domain.files import (
    FILE_ID_RE,
    Step,
)
from file_pipeline.workfiles import (
    WorkFileCorrupt,
)

from .shared import StepFailed, Workbench

log = logging.getLogger(__name__)


# ====================================================================== consumers (Service Bus)
class StepConsumer:
    """FileAdaptor's or FileCreator's side of its queue, for :func:`choreography.handling.consume`.

    Failures are classified here, once: a corrupt work file, an unusable message or a business
    refusal is permanent. Any other error is transient and is tried again *later*: unless the
    file is settled (another run of this message finished it while this one failed, or
    compensation took it: nothing to do), a copy of the message with the next ``attempt`` is scheduled after
    :func:`~choreography.retry.retry_delay` and this message completes. On the last attempt
    (``PAYMENT_FILES_MAX_ATTEMPTS``) the error is permanent too, so the file is compensated
    instead of silently landing in the broker's dead-letter queue. A permanent failure asks for
    compensation; ``consume`` then dead-letters the message with the reason.

    The broker's delivery count is not the budget: it also counts deliveries that a crash or a
    lock running out used, which say nothing about whether the step can succeed.
    """

    def __init__(self, pipeline: Workbench, step: Step, contract: type[Contract],
                 action: Callable[[Any, Cause], None]) -> None:
        self.pipeline = pipeline
        self.step = step
        self.contracts = ContractRegistry(contract)
        self._action = action

    def handle(self, received: Received) -> None:
        payload = received.payload
        if not isinstance(payload, PaymentFileValidated | PaymentFileAdapted):
            unexpected(received)
        telemetry.annotate({telemetry.PAYMENT_FILE: f"{payload.file.client_id}/{payload.file.file_name}",
                            telemetry.ATTEMPT: payload.attempt})
        try:
            self._action(payload, received.cause)
        except PermanentFailure:
            raise
        except WorkFileCorrupt as exc:
            raise StepFailed(str(exc), AppReason.WORK_FILE_CORRUPT) from exc
        except Exception as exc:
            if self.pipeline.settled(self.step, payload.file):
                log.info("%s: file %s was finished by another run of message %s; this run's error is moot: %r",
                         self.step.value, payload.file.file_id, received.incoming.message_id, exc)
                return
            attempt, limit = payload.attempt, self.pipeline.options.max_attempts
            if attempt >= limit:
                raise StepFailed(f"{self.step.value} still failed on attempt {attempt} of {limit}: {exc!r}",
                                 AppReason.RETRIES_EXHAUSTED) from exc
            at = self.pipeline.retry_later(payload, received.cause)
            log.warning("%s: file %s failed on attempt %d of %d (%r); attempt %d at %s", self.step.value,
                        payload.file.file_id, attempt, limit, exc, attempt + 1, at.isoformat())

    def on_permanent_failure(self, incoming: Incoming, received: Received | None, failure: PermanentFailure) -> None:
        payload: Any = received.payload if received is not None else None
        if payload is not None:
            file_id, client_id = payload.file.file_id, payload.file.client_id
        else:  # unreadable: the envelope's correlation id is still the file id
            file_id, client_id = incoming.delivery_id or "", None
        if not FILE_ID_RE.match(file_id):
            log.error("%s: permanent failure on a message naming no file (%s); only dead-lettered",
                      self.step.value, failure.description)
            return
        cause = received.cause if received is not None else incoming.cause
        self.pipeline.request_compensation(file_id, client_id, self.step, failure.reason.value, failure.description,
                                           cause)
