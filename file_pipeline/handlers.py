"""The payment-file pipeline's functions: triggers only; the use cases are in ``steps/``, one module each.

==============================  =========================================================  ====================
function                        trigger                                                    use case (steps/)
==============================  =========================================================  ====================
``file_pipeline_validate``      blob ``payment-files-in/{clientId}/{fileName}``             ``validate.py``
``file_pipeline_adapt``         Service Bus queue ``payment-files-validated``              ``adapt.py``
``file_pipeline_create``        Service Bus queue ``payment-files-adapted``                ``create.py``
``file_pipeline_compensate``    Service Bus queue ``payment-files-compensation``           ``compensate.py``
``file_pipeline_status``        HTTP ``GET /api/payment-files/{clientId}/{*fileName}``      ``status.py``
==============================  =========================================================  ====================

Service Bus handlers settle by exception through :func:`choreography.handling.consume`: return
to complete, raise to have the broker redeliver; permanent failures are compensated and
dead-lettered there. The blob trigger's retries and poison queue are the host's (blob receipts).

The blob trigger's ``source`` is the app setting ``PAYMENT_FILES_BLOB_TRIGGER_SOURCE``, read when
the worker indexes the functions: ``EventGrid`` (Microsoft.Storage.BlobCreated events; the only
kind Flex Consumption runs, and what infra/ deploys) or ``LogsAndContainerScan`` (polling, the
default locally).

The blob trigger is an SDK-type binding (``azurefunctions.extensions.bindings.blob``): the host
hands over a ``BlobClient`` and downloads nothing (with ``func.InputStream`` the whole file
would sit in the worker's memory before the function starts). FileValidator reads the blob's
ETag once, derives the file id from name + ETag, and streams only that version.
"""

from __future__ import annotations

import json

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from choreography import telemetry
from choreography.entities import (
    ADAPTED_QUEUE,
    COMPENSATION_QUEUE,
    INPUT_CONTAINER,
    PAYMENT_NOTICES_TOPIC,
    VALIDATED_QUEUE,
)
from choreography.flow import flow, to
from choreography.handling import consume
from choreography.settings import SERVICE_BUS_CONNECTION, STORAGE_CONNECTION, blob_trigger_source
from choreography.triggers import incoming
from contracts.payment_files import (
    PAYMENT_FILE_CREATED,
    PAYMENT_FILE_REJECTED,
    CompensatePaymentFile,
    PaymentFileAdapted,
    PaymentFileValidated,
)

from .blob_adapters import TriggerBlobClient
from .bootstrap import pipeline
from .steps.status import FileStatus
from .steps.validate import Upload

bp = func.Blueprint()


@bp.function_name("file_pipeline_validate")
@bp.blob_trigger(arg_name="client", path=f"{INPUT_CONTAINER}/{{clientId}}/{{fileName}}",
                 connection=STORAGE_CONNECTION, source=func.BlobSource(blob_trigger_source()))
@flow(to(VALIDATED_QUEUE, PaymentFileValidated), to(PAYMENT_NOTICES_TOPIC, PAYMENT_FILE_REJECTED, PAYMENT_FILE_CREATED))
def file_pipeline_validate(client: blob.BlobClient) -> None:
    """FileValidator: an uploaded payment file -> PaymentFileValidated, or rejected with reasons."""
    telemetry.annotate({telemetry.PAYMENT_FILE: client.blob_name})
    upload = Upload(container=client.container_name, name=client.blob_name, blob=TriggerBlobClient(client))
    pipeline().validate(upload)


@bp.function_name("file_pipeline_adapt")
@bp.service_bus_queue_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION, queue_name=VALIDATED_QUEUE.name)
@flow(to(ADAPTED_QUEUE, PaymentFileAdapted), to(VALIDATED_QUEUE, PaymentFileValidated),
      to(COMPENSATION_QUEUE, CompensatePaymentFile))
def file_pipeline_adapt(message: func.ServiceBusMessage) -> None:
    """FileAdaptor: PaymentFileValidated -> canonical instructions -> PaymentFileAdapted."""
    p = pipeline()
    consume(incoming(message, VALIDATED_QUEUE), p.adaptor, p.publisher)


@bp.function_name("file_pipeline_create")
@bp.service_bus_queue_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION, queue_name=ADAPTED_QUEUE.name)
@flow(to(ADAPTED_QUEUE, PaymentFileAdapted), to(COMPENSATION_QUEUE, CompensatePaymentFile),
      to(PAYMENT_NOTICES_TOPIC, PAYMENT_FILE_CREATED))
def file_pipeline_create(message: func.ServiceBusMessage) -> None:
    """FileCreator: PaymentFileAdapted -> pain.001.001.09 + pain.002, Completed, PaymentFileCreated."""
    p = pipeline()
    consume(incoming(message, ADAPTED_QUEUE), p.creator, p.publisher)


@bp.function_name("file_pipeline_compensate")
@bp.service_bus_queue_trigger(arg_name="message", connection=SERVICE_BUS_CONNECTION,
                              queue_name=COMPENSATION_QUEUE.name)
@flow(to(PAYMENT_NOTICES_TOPIC, PAYMENT_FILE_REJECTED, PAYMENT_FILE_CREATED))
def file_pipeline_compensate(message: func.ServiceBusMessage) -> None:
    """Compensation: CompensatePaymentFile -> earlier steps undone, Rejected, PaymentFileRejected."""
    p = pipeline()
    consume(incoming(message, COMPENSATION_QUEUE), p.compensation, p.publisher)


@bp.function_name("file_pipeline_status")
@bp.route(route="payment-files/{clientId}/{*fileName}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@flow()
def file_pipeline_status(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/payment-files/{clientId}/{fileName} -> state, counts, reasons, output locations."""
    found = pipeline().status(req.route_params.get("clientId", ""), req.route_params.get("fileName", ""))
    if isinstance(found, FileStatus):
        return func.HttpResponse(json.dumps(found.view), status_code=200, mimetype="application/json",
                                 charset="utf-8")
    problem = {"type": "about:blank", "title": found.title, "status": found.status, "detail": found.detail}
    return func.HttpResponse(json.dumps(problem), status_code=found.status, mimetype="application/problem+json",
                             charset="utf-8")
