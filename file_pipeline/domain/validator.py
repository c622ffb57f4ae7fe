"""Apply transaction and file rules to a reader's stream, under the client's policy.

:class:`FileValidation` consumes a reader (CSV, pain.001, NACHA), yields the
transactions that pass every rule (with debtor account and execution date
resolved, ready for :class:`~file_pipeline.instructions.InstructionsBuilder`),
spools rejections to disk, and at the end applies the file rules. The client's
daily limit is the last transaction rule: it counts only transactions that passed
the others, in file order, on top of what the client's earlier live files use
(:mod:`file_pipeline.domain.daily`). The run's
:class:`ValidationResult` decides the group status:

* any file-level finding (format, structure, controls, duplicates, per-file
  limit) -> ``RJCT``;
* otherwise, with policy ``reject-file`` any rejected transaction -> ``RJCT``;
  with ``pass-valid`` -> ``PART`` (``RJCT`` if none is valid);
* no rejection -> ``ACCP``.

Because the decision is known only at the end of the stream, callers spool the
accepted transactions (the pain.001 writer does) and emit output only when
:attr:`ValidationResult.output_allowed` is true.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, cast

from file_pipeline.domain import rules
from file_pipeline.domain.daily import UNLIMITED_CENTS, DailyLedger, DayKey
from file_pipeline.domain.model import FileFormat, FileHeader, FileRejected, Finding, Transaction
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import PASS_VALID, Client, ReferenceData

ACCP, PART, RJCT = "ACCP", "PART", "RJCT"


class Reader(Protocol):
    """What the validator reads. A reader may also offer ``screened(entry_screen)`` (see
    :meth:`file_pipeline.formats.nacha.NachaReader.screened`): each entry as ``(entry, None)``,
    or, when it passed the :class:`~file_pipeline.domain.rules.EntryScreen`, in a list of such
    entries of one currency as ``(entries, cents)`` with the sum of their amounts in cents,
    which the validator then takes as valid without applying the rules one by one."""

    header: FileHeader

    def __iter__(self) -> Iterator[Transaction]: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    line: int | None
    end_to_end_id: str
    instruction_id: str
    block_id: str
    amount: str
    currency: str
    findings: tuple[Finding, ...]

    def to_json(self) -> str:
        return json.dumps(
            [
                self.index,
                self.line,
                self.end_to_end_id,
                self.instruction_id,
                self.block_id,
                self.amount,
                self.currency,
                [[f.code.value, f.description] for f in self.findings],
            ],
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> "Rejection":
        i, line, e2e, instr, block, amount, ccy, fs = json.loads(text)
        return cls(i, line, e2e, instr, block, amount, ccy, tuple(Finding(IsoReason.of(c), d) for c, d in fs))


class RejectionLog:
    """Append-only, re-iterable log of rejections; in memory up to 1 MiB, then on disk."""

    def __init__(self, spool_dir: str | None = None) -> None:
        # open for the log's life, closed by close()
        self._file = tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+b", dir=spool_dir)  # noqa: SIM115
        self._count = 0

    def append(self, rejection: Rejection) -> None:
        self._file.write(rejection.to_json().encode("utf-8") + b"\n")
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Rejection]:
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            yield Rejection.from_json(line.decode("utf-8"))
        self._file.seek(0, 2)

    def close(self) -> None:
        self._file.close()


@dataclass
class ValidationResult:
    client_id: str
    policy: str
    header: FileHeader | None = None
    file_findings: list[Finding] = field(default_factory=list)
    total: int = 0
    accepted: int = 0
    rejected: int = 0
    accepted_sum: Decimal = Decimal(0)
    rejected_sum: Decimal = Decimal(0)
    totals_by_currency: dict[str, Decimal] = field(default_factory=dict)
    rejections: RejectionLog | None = None
    daily: DailyLedger | None = None  # None: the client has no daily limit

    @property
    def group_status(self) -> str:
        if self.file_findings:
            return RJCT
        if self.rejected == 0:
            return ACCP if self.accepted else RJCT
        if self.policy == PASS_VALID and self.accepted:
            return PART
        return RJCT

    @property
    def output_allowed(self) -> bool:
        return self.group_status in (ACCP, PART)

    def group_reasons(self) -> list[Finding]:
        """Reasons to put at group level of the status report."""
        if self.file_findings:
            return list(self.file_findings)
        if self.group_status == RJCT and self.rejected:
            why = "policy reject-file" if self.policy != PASS_VALID else "no valid transaction"
            return [
                Finding(
                    IsoReason.NARR,
                    f"file rejected as a whole ({why}): {self.rejected} of "
                    f"{self.total} transactions failed validation",
                )
            ]
        if self.group_status == RJCT:
            return [Finding(IsoReason.AM18, "the file contains no transactions")]
        return []


class FileValidation:
    """One validation run over one file for one client, at one clock reading ``now``."""

    def __init__(
        self,
        reader: Reader,
        ref: ReferenceData,
        client_id: str,
        now: datetime,
        *,
        file_format: FileFormat | None = None,
        layout_name: str = "",
        seen_msg_ids: Container[str] = frozenset(),
        spool_dir: str | None = None,
        daily_used: Mapping[DayKey, Decimal] | None = None,
    ) -> None:
        """``daily_used``: what the client's earlier live files use of its daily limits, per
        (currency, execution date); none when not given."""
        client = ref.clients.get(client_id)
        if client is None:
            raise FileRejected(IsoReason.NARR, f"unknown client {client_id!r}")
        self.reader = reader
        self.ref = ref
        self.client: Client = client
        self.now = now
        self.rules = rules.TransactionRules(ref, client, now)
        self.file_format = file_format or reader.header.format
        self.layout_name = layout_name
        self.seen_msg_ids = seen_msg_ids
        self.result = ValidationResult(client_id, client.rejection_policy, rejections=RejectionLog(spool_dir))
        if client.daily_limits:
            self.result.daily = DailyLedger(client, daily_used or {})
        self._done = False

    def accepted(self) -> Iterator[Transaction]:
        """Validate the whole stream; yield transactions that pass every transaction rule."""
        for run in self.accepted_runs():
            yield from run

    def accepted_runs(self) -> Iterator[Sequence[Transaction]]:
        """:meth:`accepted` in runs of consecutive transactions, as the reader's screen passed
        them, which spares the consumer a generator step per transaction."""
        if self._done:
            raise RuntimeError("a FileValidation runs once")
        self._done = True
        res = self.result
        res.header = self.reader.header
        allowed = rules.check_format_allowed(self.file_format, self.client, self.layout_name)
        if allowed:
            res.file_findings.append(allowed)
            return
        check = self.rules.check
        client = self.client
        totals = res.totals_by_currency
        log = res.rejections
        assert log is not None  # a FileValidation keeps its rejections from the start
        daily = res.daily
        default_accounts: dict[str, str] = {}

        def reject(tx: Transaction, findings: list[Finding]) -> None:
            res.rejected += 1
            if tx.amount is not None and tx.amount.is_finite():
                res.rejected_sum += tx.amount
            log.append(
                Rejection(
                    tx.index,
                    tx.line,
                    tx.end_to_end_id,
                    tx.instruction_id,
                    tx.payment_block_id,
                    tx.amount_text,
                    tx.currency,
                    tuple(findings),
                )
            )

        def passes(tx: Transaction) -> bool:
            """Apply every transaction rule to ``tx``: log it as rejected, or complete it."""
            res.total += 1
            findings = check(tx)
            if tx.amount is not None and tx.amount.is_finite():
                totals[tx.currency] = totals.get(tx.currency, Decimal(0)) + tx.amount
            if findings:
                reject(tx, findings)
                return False
            if not tx.debtor_account:
                account = default_accounts.get(tx.currency)
                if account is None:
                    default = client.default_account(tx.currency)
                    assert default is not None  # check() refused a currency the client has no account in
                    account = default_accounts[tx.currency] = default.id
                tx.debtor_account = account
            if tx.requested_execution_date is None:
                tx.requested_execution_date = self.rules.default_execution_date(tx.currency)
            amount = cast(Decimal, tx.amount)  # check() refused a transaction without an amount
            if daily is not None:  # last: only a transaction that passed every other rule uses the limit
                over = daily.admit(tx.currency, tx.requested_execution_date, amount)
                if over is not None:
                    reject(tx, [over])
                    return False
            res.accepted += 1
            res.accepted_sum += amount
            return True

        screened = getattr(self.reader, "screened", None)
        # Entries that passed the reader's screen are valid but for the daily limit: counted here
        # in cents, a run of entries of one currency and execution date at a time, each run
        # checked against the room the daily limit leaves it (no Decimal per entry).
        screened_counts: dict[str, tuple[int, int]] = {}  # currency -> (entries, cents)
        ccy: str = ""
        day: date | None = None
        count, cents_sum, room = 0, 0, UNLIMITED_CENTS
        try:
            if screened is None:
                for tx in self.reader:
                    if passes(tx):
                        yield (tx,)
            else:
                for item, cents in screened(self.rules.entry_screen):
                    if cents is None:
                        # the daily limit sees this one at once: the run so far must be counted first
                        _end_run(screened_counts, daily, ccy, day, count, cents_sum)
                        ccy, count, cents_sum = "", 0, 0
                        if passes(item):
                            yield (item,)
                        continue
                    first = item[0]  # a run is of one currency and execution date (one batch; CSV: one screen)
                    if first.currency != ccy or first.requested_execution_date != day:
                        _end_run(screened_counts, daily, ccy, day, count, cents_sum)
                        ccy, day, count, cents_sum = first.currency, first.requested_execution_date, 0, 0
                        room = UNLIMITED_CENTS if daily is None else daily.room_cents(ccy, day)
                    if cents_sum + cents <= room:  # the whole run fits: the common case
                        cents_sum += cents
                        count += len(item)
                        yield item
                        continue
                    # The run would take the day over its limit: entry by entry, in file order.
                    kept: list[Transaction] = []
                    for tx in item:
                        tx_cents = int(tx.amount.scaleb(2))
                        if cents_sum + tx_cents > room:
                            _end_run(screened_counts, daily, ccy, day, count, cents_sum)
                            count, cents_sum = 0, 0
                            assert daily is not None  # only a daily limit leaves a run less than unlimited room
                            res.total += 1
                            totals[ccy] = totals.get(ccy, Decimal(0)) + tx.amount
                            reject(tx, [daily.refusal(ccy, day, tx.amount)])
                            room = daily.room_cents(ccy, day)
                            continue
                        cents_sum += tx_cents
                        count += 1
                        kept.append(tx)
                    if kept:
                        yield kept
        except FileRejected as exc:
            res.file_findings.append(exc.finding)
            return
        finally:
            _end_run(screened_counts, daily, ccy, day, count, cents_sum)
            for code, (n, cents_total) in screened_counts.items():
                amount = Decimal(cents_total).scaleb(-2)
                totals[code] = totals.get(code, Decimal(0)) + amount
                res.total += n
                res.accepted += n
                res.accepted_sum += amount
        header = self.reader.header
        dup = rules.check_duplicate_msg_id(header.msg_id, self.seen_msg_ids)
        if dup:
            res.file_findings.append(dup)
        res.file_findings.extend(rules.check_file_controls(header))
        res.file_findings.extend(rules.check_file_limits(totals, client))

    def run(self) -> ValidationResult:
        """Validate without keeping the accepted transactions."""
        for _ in self.accepted():
            pass
        return self.result


def _end_run(
    screened_counts: dict[str, tuple[int, int]],
    daily: DailyLedger | None,
    currency: str,
    day: date | None,
    count: int,
    cents: int,
) -> None:
    """Count a run of screened entries of one currency and day (see ``FileValidation.accepted``)."""
    if not count:
        return
    n, total = screened_counts.get(currency, (0, 0))
    screened_counts[currency] = (n + count, total + cents)
    if daily is not None:
        daily.add_cents(currency, day, cents)




def codes(findings: Iterable[Finding]) -> list[str]:
    return [f.code.value for f in findings]
