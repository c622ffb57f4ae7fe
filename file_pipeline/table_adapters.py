"""Table Storage adapters of the pipeline's ports: :class:`TableFileRecords` (the files' records,
name pointers, duplicate claims and day totals in ``paymentfiles``) and
:class:`TableReferenceSource` (``paymentreference``). Built once per process by
:mod:`file_pipeline.bootstrap`, never at import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from choreography.errors import ConcurrencyConflict
from contracts.payment_files import UNSAFE_NAMES_PARTITION
from file_pipeline.domain.daily import DayTotal, day_key
from file_pipeline.domain.files import (
    CLIENT_ID_RE,
    FILE_ID_RE,
    DuplicateKey,
    FileState,
    PaymentFile,
)
from file_pipeline.domain.reference import ReferenceData
from file_pipeline.ports import (
    DailyTotalsMoved,
    DuplicateClaimed,
)

log = logging.getLogger(__name__)


FILE_ROW = "file-"
NAME_ROW = "name-"
CLAIM_ROW = "dup-"
DAY_ROW = "day-"
MAX_PREVIOUS = 20
MAX_TRANSACTION = 100  # operations in one Table transaction (entity group transaction)
MAX_TEXT = 2000


def _partition_ok(client_id: str | None) -> bool:
    return bool(client_id) and (client_id == UNSAFE_NAMES_PARTITION or bool(CLIENT_ID_RE.match(client_id or "")))


def name_row_key(file_name: str) -> str:
    return NAME_ROW + hashlib.sha256(file_name.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def day_row_key(currency: str, day: date) -> str:
    return DAY_ROW + day_key(currency, day)


def _dt(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _to_entity(record: PaymentFile) -> dict[str, Any]:
    return {
        "PartitionKey": record.client_id,
        "RowKey": FILE_ROW + record.file_id,
        "fileId": record.file_id,
        "fileName": record.file_name,
        "state": record.state.value,
        "receivedAt": _dt(record.received_at),
        "updatedAt": _dt(record.updated_at),
        "inputName": record.input_name,
        "sourceEtag": record.source_etag,
        "size": "" if record.size is None else str(record.size),  # may exceed Int32: kept as text
        "sha256": record.sha256,
        "format": record.format,
        "msgId": record.msg_id,
        "originalNbOfTxs": record.original_nb_of_txs,
        "originalCtrlSum": record.original_ctrl_sum,
        "validatedAt": _dt(record.validated_at),
        "groupStatus": record.group_status,
        "transactions": record.transactions,
        "accepted": record.accepted,
        "rejected": record.rejected,
        "acceptedSum": record.accepted_sum,
        "rejectedSum": record.rejected_sum,
        "reasons": json.dumps([[c, d[:MAX_TEXT]] for c, d in record.reasons], ensure_ascii=False),
        "transactionReasons": json.dumps(record.transaction_reasons),
        "locations": json.dumps(record.locations, ensure_ascii=False),
        "failedStep": record.failed_step,
        "duplicateKeys": json.dumps(record.duplicate_keys),
        "dailyAmounts": json.dumps(record.daily_amounts),
        "handoff": json.dumps(record.handoff, ensure_ascii=False) if record.handoff else "",
        "notified": record.notified,
    }


def _from_entity(entity: Mapping[str, Any]) -> PaymentFile:
    def when(name: str) -> datetime | None:
        text = entity.get(name) or ""
        return datetime.fromisoformat(text) if text else None

    received = when("receivedAt")
    assert received is not None
    return PaymentFile(
        file_id=entity["fileId"],
        client_id=entity["PartitionKey"],
        file_name=entity.get("fileName", ""),
        state=FileState(entity["state"]),
        received_at=received,
        updated_at=when("updatedAt") or received,
        input_name=entity.get("inputName", ""),
        source_etag=entity.get("sourceEtag", ""),
        size=int(entity["size"]) if entity.get("size") not in (None, "") else None,
        sha256=entity.get("sha256", ""),
        format=entity.get("format", ""),
        msg_id=entity.get("msgId", ""),
        original_nb_of_txs=int(entity.get("originalNbOfTxs") or 0),
        original_ctrl_sum=entity.get("originalCtrlSum") or "0",
        validated_at=when("validatedAt"),
        group_status=entity.get("groupStatus", ""),
        transactions=int(entity.get("transactions") or 0),
        accepted=int(entity.get("accepted") or 0),
        rejected=int(entity.get("rejected") or 0),
        accepted_sum=entity.get("acceptedSum") or "0",
        rejected_sum=entity.get("rejectedSum") or "0",
        reasons=[(c, d) for c, d in json.loads(entity.get("reasons") or "[]")],
        transaction_reasons=json.loads(entity.get("transactionReasons") or "{}"),
        locations=json.loads(entity.get("locations") or "{}"),
        failed_step=entity.get("failedStep", ""),
        duplicate_keys=json.loads(entity.get("duplicateKeys") or "[]"),
        daily_amounts=json.loads(entity.get("dailyAmounts") or "{}"),
        handoff=json.loads(entity["handoff"]) if entity.get("handoff") else None,
        notified=bool(entity.get("notified", False)),
        version=entity.metadata["etag"] if hasattr(entity, "metadata") else None,
    )


def _if_unchanged(etag: str) -> dict[str, Any]:
    return {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


class TableFileRecords:
    """Table ``paymentfiles``: PartitionKey = client id; RowKeys ``file-{fileId}`` (the record),
    ``name-{sha256(fileName)}`` (latest file of that name), ``dup-{key}`` (duplicate claims) and
    ``day-{CCY}-{YYYY-MM-DD}`` (the running total of the client's live files on a currency and
    requested execution date, property ``amount`` a decimal string)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def _get(self, partition: str, row: str) -> Any | None:
        try:
            return self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    def get(self, client_id: str, file_id: str) -> PaymentFile | None:
        if not _partition_ok(client_id) or not FILE_ID_RE.match(file_id or ""):
            return None
        entity = self._get(client_id, FILE_ROW + file_id)
        return _from_entity(entity) if entity is not None else None

    def find(self, file_id: str) -> PaymentFile | None:
        if not FILE_ID_RE.match(file_id or ""):
            return None
        for entity in self._table.query_entities("RowKey eq @row", parameters={"row": FILE_ROW + file_id}):
            return _from_entity(entity)
        return None

    def latest(self, client_id: str, file_name: str) -> tuple[PaymentFile | None, list[str]]:
        if not _partition_ok(client_id):
            return None, []
        pointer = self._get(client_id, name_row_key(file_name))
        if pointer is None or pointer.get("fileName") != file_name:
            return None, []
        return self.get(client_id, pointer["fileId"]), json.loads(pointer.get("previousFileIds") or "[]")

    def add(self, record: PaymentFile) -> None:
        entity = _to_entity(record)
        for _ in range(5):
            pointer = self._get(record.client_id, name_row_key(record.file_name))
            previous: list[str] = []
            if pointer is not None:
                previous = json.loads(pointer.get("previousFileIds") or "[]")
                if pointer.get("fileId") and pointer["fileId"] != record.file_id:
                    previous = [pointer["fileId"], *previous][:MAX_PREVIOUS]
            new_pointer = {"PartitionKey": record.client_id, "RowKey": name_row_key(record.file_name),
                           "fileName": record.file_name, "fileId": record.file_id,
                           "previousFileIds": json.dumps(previous)}
            operations: list[Any] = [("create", entity)]
            if pointer is None:
                operations.append(("create", new_pointer))
            else:
                operations.append(("update", new_pointer, _if_unchanged(pointer.metadata["etag"])))
            try:
                results = self._table.submit_transaction(operations)
            except TableTransactionError as exc:
                if _failed_index(exc) == 0:
                    raise ConcurrencyConflict(f"file {record.file_id} is already recorded") from None
                continue  # the name pointer moved meanwhile: read it again
            record.version = results[0]["etag"]
            return
        raise ConcurrencyConflict(f"the pointer for {record.file_name!r} keeps changing")

    def save(self, record: PaymentFile, *, claim: Sequence[DuplicateKey] = (), release: Sequence[str] = (),
             totals: Sequence[DayTotal] = ()) -> None:
        if record.version is None:
            raise ConcurrencyConflict(f"file {record.file_id} was never stored")
        operations: list[Any] = [("update", _to_entity(record), _if_unchanged(record.version))]
        operations.extend(("create", {"PartitionKey": record.client_id, "RowKey": CLAIM_ROW + key.key,
                                      "fileId": record.file_id, "fileName": record.file_name,
                                      "kind": key.kind, "value": key.value[:MAX_TEXT]}) for key in claim)
        for released in release:
            held = self._get(record.client_id, CLAIM_ROW + released)
            if held is not None and held.get("fileId") == record.file_id:
                operations.append(("delete", {"PartitionKey": record.client_id, "RowKey": CLAIM_ROW + released},
                                   {"etag": held.metadata["etag"], "match_condition": MatchConditions.IfNotModified}))
        first_total = len(operations)
        for total in totals:
            entity = {"PartitionKey": record.client_id, "RowKey": day_row_key(total.currency, total.day),
                      "currency": total.currency, "day": total.day.isoformat(), "amount": format(total.amount, "f")}
            if total.version is None:
                operations.append(("create", entity))  # fails if another file created it meanwhile
            else:
                operations.append(("update", entity, _if_unchanged(total.version)))
        if len(operations) > MAX_TRANSACTION:
            raise ValueError(f"saving file {record.file_id} takes {len(operations)} writes; one Table transaction "
                             f"holds at most {MAX_TRANSACTION}")
        try:
            results = self._table.submit_transaction(operations)
        except TableTransactionError as exc:
            index = _failed_index(exc)
            if index is not None and 1 <= index <= len(claim):
                key = claim[index - 1]
                held = self._get(record.client_id, CLAIM_ROW + key.key)
                raise DuplicateClaimed(key.key, held.get("fileId", "?") if held else "?") from None
            if index is not None and index >= first_total:
                moved = totals[index - first_total]
                raise DailyTotalsMoved(f"the {moved.currency} total of {record.client_id} for {moved.day} "
                                       "changed since it was read") from None
            raise ConcurrencyConflict(f"file {record.file_id} changed since it was read") from None
        record.version = results[0]["etag"]

    def day_totals(self, client_id: str, currencies: Sequence[str], since: date) -> list[DayTotal]:
        if not _partition_ok(client_id) or not currencies:
            return []
        parameters: dict[str, Any] = {"client": client_id}
        ranges = []
        for i, currency in enumerate(currencies):
            # one key range per currency: day-EUR-{since} up to day-EUR. ("." sorts right after "-")
            parameters[f"from{i}"] = day_row_key(currency, since)
            parameters[f"to{i}"] = f"{DAY_ROW}{currency}."
            ranges.append(f"( RowKey ge @from{i} and RowKey lt @to{i} )")  # the SDK finds @names between spaces
        query = f"PartitionKey eq @client and ( {' or '.join(ranges)} )"
        return [DayTotal(entity["currency"], date.fromisoformat(entity["day"]), Decimal(entity["amount"]),
                         entity.metadata["etag"])
                for entity in self._table.query_entities(query, parameters=parameters)]

    def claim_owners(self, client_id: str, keys: Sequence[DuplicateKey]) -> dict[str, tuple[str, str]]:
        owners = {}
        for key in keys:
            held = self._get(client_id, CLAIM_ROW + key.key)
            if held is not None:
                owners[key.key] = (held.get("fileId", ""), held.get("fileName", ""))
        return owners


def _failed_index(exc: TableTransactionError) -> int | None:
    index = getattr(exc, "index", None)
    if isinstance(index, int):
        return index
    text = str(getattr(exc, "message", "") or exc)
    head = text.split(":", 1)[0].strip()
    return int(head) if head.isdigit() else None


# ====================================================================== reference table
class TableReferenceSource:
    """The reference table (``paymentreference``), read whole: a few thousand small rows."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def load(self) -> ReferenceData:
        return ReferenceData.from_entities(self._table.list_entities())
