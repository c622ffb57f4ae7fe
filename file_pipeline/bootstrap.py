"""Wiring: the pipeline on real adapters, built once per process on first use (never at import).

Handlers call :func:`pipeline`; the shared :class:`choreography.runtime.Runtime` supplies the
Service Bus publisher (stamped envelopes, deterministic message ids, the app-level dead-letter
route) and the table clients; this module adds the blob client and the ``payments`` Event Grid
publisher from the ``payments`` section of :class:`choreography.settings.Settings`. Tests wire fakes by building
:class:`~file_pipeline.service.PaymentFilePipeline` themselves.
"""

from __future__ import annotations

from choreography.clock import FixedClock
from choreography.entities import CONTAINERS, FILES_TABLE, PAYMENT_NOTICES_TOPIC, REFERENCE_TABLE
from choreography.publishing import EventGridPublisher
from choreography.runtime import Runtime, runtime
from choreography.settings import PAYMENTS_EVENT_GRID_ENDPOINT
from contracts.payment_files import EVENT_SOURCE

from .blob_adapters import AzureBlobStore, blob_service
from .service import Options, PaymentFilePipeline
from .table_adapters import TableFileRecords, TableReferenceSource


def build(rt: Runtime) -> PaymentFilePipeline:
    settings = rt.settings.payments
    blobs = AzureBlobStore(blob_service(rt.settings.storage_account()))
    blobs.ensure_containers(CONTAINERS)
    events = EventGridPublisher(rt.settings.require(settings.event_grid_endpoint, PAYMENTS_EVENT_GRID_ENDPOINT),
                                settings.event_grid_key, rt.clock, source=EVENT_SOURCE, topic=PAYMENT_NOTICES_TOPIC,
                                identity=settings.event_grid_identity)
    return PaymentFilePipeline(
        blobs=blobs,
        records=TableFileRecords(rt.table(FILES_TABLE)),
        reference=TableReferenceSource(rt.table(REFERENCE_TABLE)),
        publisher=rt.publisher,
        events=events,
        clock=rt.clock,
        rules_clock=FixedClock(settings.fixed_now) if settings.fixed_now else None,
        options=Options(settings.max_bytes, settings.spool_dir, max_attempts=settings.max_attempts,
                        retry_base=settings.retry_base),
    )


def pipeline() -> PaymentFilePipeline:
    """The process's pipeline (built by the first invocation that needs it)."""
    return runtime().service(build)
