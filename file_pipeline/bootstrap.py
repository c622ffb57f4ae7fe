"""Wiring: the pipeline on real adapters, built once per process on first use (never at import).

Handlers call :func:`pipeline`; the shared :class:`choreography.runtime.Runtime` supplies the
Service Bus publisher (stamped envelopes, deterministic message ids, the app-level dead-letter
route) and the table clients; this module adds the blob client and the ``payments`` Event Grid
publisher from :class:`~file_pipeline.settings.PipelineSettings`. Tests wire fakes by building
:class:`~file_pipeline.service.PaymentFilePipeline` themselves.
"""

from __future__ import annotations

from datetime import datetime

from choreography.publishing import EventGridPublisher
from choreography.runtime import Runtime, runtime
from choreography.settings import STORAGE_CONNECTION

from .adapters import AzureBlobStore, TableFileRecords, TableReferenceSource, blob_service
from .messages import EVENT_SOURCE
from .ports import CONTAINERS, FILES_TABLE, REFERENCE_TABLE
from .service import Options, PaymentFilePipeline
from .settings import EVENT_GRID_ENDPOINT, EVENT_GRID_KEY, PipelineSettings


class FrozenClock:
    """``PAYMENT_FILES_CLOCK``: the validation clock stopped at one instant (demos, tests)."""

    def __init__(self, moment: datetime) -> None:
        self._moment = moment

    def now(self) -> datetime:
        return self._moment


def build(rt: Runtime) -> PaymentFilePipeline:
    settings = PipelineSettings.from_env()
    storage = settings.require(settings.storage_connection, STORAGE_CONNECTION)
    blobs = AzureBlobStore(blob_service(storage))
    blobs.ensure_containers(CONTAINERS)
    events = EventGridPublisher(settings.require(settings.event_grid_endpoint, EVENT_GRID_ENDPOINT),
                                settings.require(settings.event_grid_key, EVENT_GRID_KEY), rt.clock,
                                source=EVENT_SOURCE)
    return PaymentFilePipeline(
        blobs=blobs,
        records=TableFileRecords(rt.table(FILES_TABLE)),
        reference=TableReferenceSource(rt.table(REFERENCE_TABLE)),
        publisher=rt.publisher,
        events=events,
        clock=rt.clock,
        rules_clock=FrozenClock(settings.fixed_now) if settings.fixed_now else None,
        options=Options(settings.max_bytes, settings.spool_dir, max_attempts=settings.max_attempts,
                        retry_base=settings.retry_base),
    )


def pipeline() -> PaymentFilePipeline:
    """The process's pipeline (built by the first invocation that needs it)."""
    return runtime().service(build)
