"""Format-neutral records shared by the readers, the rules and the writers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import Enum

from file_pipeline.domain.reason_codes import IsoReason


class FileFormat(str, Enum):  # noqa: UP042 - StrEnum would change str() of members, which messages use
    CSV = "CSV"
    PAIN001_03 = "pain.001.001.03"
    PAIN001_09 = "pain.001.001.09"
    NACHA = "NACHA"

    @property
    def family(self) -> str:
        """Name used in a client's allow-list: ``CSV``, ``PAIN001`` or ``NACHA``."""
        return "PAIN001" if self.value.startswith("pain.001") else self.value


@dataclass(slots=True, frozen=True)
class Finding:
    """One rule violation: ISO reason code plus a human description."""

    code: IsoReason
    description: str

    def __str__(self) -> str:
        return f"{self.code.value}: {self.description}"


class FileRejected(Exception):
    """The file as a whole cannot be processed (format, structure, security)."""

    def __init__(self, code: IsoReason, description: str, line: int | None = None) -> None:
        where = f" (line {line})" if line else ""
        super().__init__(f"{code.value}: {description}{where}")
        self.code = code
        self.description = description
        self.line = line

    @property
    def finding(self) -> Finding:
        where = f" (line {self.line})" if self.line else ""
        return Finding(self.code, self.description + where)


@dataclass(slots=True)
class Transaction:
    """One credit transfer, whatever the input format.

    ``amount`` is ``None`` when the source text could not be parsed (the raw
    text is kept in ``amount_text``); ``requested_execution_date`` likewise.
    ``format_findings`` carries problems the reader found while mapping the
    record (e.g. a CSV row with the wrong number of columns); the rules report
    them with the rest.
    """

    index: int  # 1-based ordinal in the file
    line: int | None  # source line (CSV/NACHA) or XML source line
    end_to_end_id: str
    amount: Decimal | None
    currency: str
    creditor_name: str = ""
    creditor_iban: str = ""
    creditor_account: str = ""  # non-IBAN account (NACHA DFI account, Japan, ...)
    creditor_routing: str = ""  # ABA routing number (9 digits) for US accounts
    creditor_bic: str = ""
    debtor_account: str = ""  # IBAN or the client's account id
    debtor_bic: str = ""
    requested_execution_date: date | None = None
    remittance_info: str = ""
    instruction_id: str = ""
    payment_block_id: str = ""  # PmtInfId, NACHA batch number, CSV file id
    amount_text: str = ""
    date_text: str = ""
    kind: str = "credit"  # credit | debit | prenote | other (NACHA txn codes)
    format_findings: tuple[Finding, ...] = ()


@dataclass(slots=True)
class PaymentBlock:
    """A pain.001 ``PmtInf`` block or a NACHA batch: declared vs. computed controls."""

    block_id: str
    line: int | None = None
    declared_nb_of_txs: int | None = None
    declared_ctrl_sum: Decimal | None = None
    nb_of_txs: int = 0
    ctrl_sum: Decimal = Decimal(0)
    # NACHA batch control (amounts in cents)
    service_class: str = ""
    company_id: str = ""
    odfi: str = ""
    effective_date: date | None = None
    declared_entry_addenda: int | None = None
    declared_entry_hash: int | None = None
    declared_debit_cents: int | None = None
    declared_credit_cents: int | None = None
    entry_addenda: int = 0
    entry_hash: int = 0
    debit_cents: int = 0
    credit_cents: int = 0


@dataclass(slots=True)
class NachaFileControl:
    declared_batch_count: int | None = None
    declared_block_count: int | None = None
    declared_entry_addenda: int | None = None
    declared_entry_hash: int | None = None
    declared_debit_cents: int | None = None
    declared_credit_cents: int | None = None
    record_count: int = 0  # all records incl. 9-filler
    immediate_destination: str = ""
    immediate_origin: str = ""
    file_id_modifier: str = ""


@dataclass(slots=True)
class FileHeader:
    """File-level information; complete only once the reader is exhausted."""

    format: FileFormat
    msg_id: str = ""
    creation: str = ""  # as found in the file
    initiating_party: str = ""
    declared_nb_of_txs: int | None = None
    declared_ctrl_sum: Decimal | None = None
    nb_of_txs: int = 0
    ctrl_sum: Decimal = Decimal(0)
    blocks: list[PaymentBlock] = field(default_factory=list)
    nacha: NachaFileControl | None = None
