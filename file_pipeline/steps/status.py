"""The status query: ``GET /api/payment-files/{clientId}/{fileName}``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from file_pipeline.domain.files import (
    CLIENT_ID_RE,
)
from file_pipeline.domain.names import UnsafeName, check_blob_name
from file_pipeline.ports import (
    FileRecords,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileStatus:
    """The file's state, counts, reasons and output locations (``PaymentFile.status_view``)."""

    view: dict[str, Any]


@dataclass(frozen=True)
class StatusProblem:
    """Why there is no status to show: an HTTP status and an RFC 9457 problem's title and detail."""

    status: int
    title: str
    detail: str


class StatusQuery:
    """``GET /api/payment-files/{clientId}/{fileName}``: the latest file under that name."""

    def __init__(self, records: FileRecords) -> None:
        self.records = records

    def status(self, client_id: str, file_name: str) -> FileStatus | StatusProblem:
        if not CLIENT_ID_RE.match(client_id or ""):
            return StatusProblem(404, "No such client", "no such client")
        try:
            check_blob_name(f"{client_id}/{file_name}")
        except UnsafeName as exc:
            return StatusProblem(400, "File name not accepted", f"file name not accepted: {exc}")
        record, previous = self.records.latest(client_id, file_name)
        if record is None:
            return StatusProblem(404, "No such file", f"no file {file_name!r} for client {client_id}")
        return FileStatus(record.status_view(previous))
