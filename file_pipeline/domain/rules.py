"""The transaction rule set and the file rules: pure functions of (record, reference data,
injected clock).

Each rule returns a :class:`Finding` (ISO reason code + description) or ``None``; the rules by
concern live beside this module (:mod:`.iban`, :mod:`.agents`, :mod:`.amounts`, :mod:`.dates`),
and the fast paths behind them in :mod:`.fast`. :class:`TransactionRules` binds the reference
data, the client and the clock and applies them all to one transaction (its :meth:`check` is the
reference path). File rules compare declared header/trailer controls with what the reader
computed.

No rule reads the wall clock: the caller passes ``now`` (an aware datetime).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal

from file_pipeline.domain.agents import check_bic, check_routing
from file_pipeline.domain.amounts import ASCII_TEXT_CHARS, XML_BAD_CHARS, check_amount, check_currency, check_text
from file_pipeline.domain.dates import check_execution_date, earliest_execution_date
from file_pipeline.domain.fast.screen import EntryScreen
from file_pipeline.domain.fast.seen_ids import NOT_PROVIDED, SeenIds
from file_pipeline.domain.iban import check_iban, iban_problem, iban_valid
from file_pipeline.domain.model import FileFormat, FileHeader, Finding, Transaction
from file_pipeline.domain.reason_codes import NACHA_ERROR_CODES, IsoReason
from file_pipeline.domain.reference import Client, ReferenceData

R = IsoReason

class TransactionRules:
    """All transaction rules bound to reference data, one client and a clock reading.

    Stateful only for DU04 (EndToEndIds seen in this file). Date and currency
    verdicts are cached per (currency, date) since files repeat them a lot.
    """

    def __init__(self, ref: ReferenceData, client: Client, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.ref = ref
        self.client = client
        self.now = now
        self._seen_e2e = SeenIds()
        self._date_cache: dict[tuple[str, date], Finding | None] = {}
        self._ccy_cache: dict[str, Finding | None] = {}
        self._bic_cache: dict[str, Finding | None] = {}
        self._routing_cache: dict[str, Finding | None] = {}
        self._earliest: dict[str, date | None] = {}
        self._amount_params: dict[str, tuple[Decimal, Decimal | None, Decimal | None] | None] = {}
        self._debtor_accounts = frozenset(account.id for account in client.accounts)

    def entry_screen(self, currency: str, requested: date | None, date_text: str) -> EntryScreen | None:
        """A cheap test for the entries of one batch (currency and execution date fixed), or
        ``None`` when something batch-wide would already give a finding (then every entry goes
        through :meth:`check`). See :class:`EntryScreen` for what an entry must still show."""
        ccy_finding = self._ccy_cache.get(currency, False)
        if ccy_finding is False:
            ccy_finding = self._ccy_cache[currency] = check_currency(currency, self.ref, self.client)
        params = self._amount_fast_path(currency)
        if ccy_finding is not None or params is None or params[0] > Decimal("0.01"):
            return None  # pragma: no cover - the currency is refused or has fewer than 2 decimals
        max_cents = None
        for limit in params[1:]:
            if limit is None:
                continue
            if not limit.is_finite():
                return None  # pragma: no cover - reference data never holds an infinite limit
            cents = int((limit * 100).to_integral_value(rounding=ROUND_FLOOR))
            max_cents = cents if max_cents is None else min(max_cents, cents)
        default = self.client.default_account(currency)
        if not self.client.accounts or default is None:
            return None
        if requested is None:
            if date_text:
                return None  # DT01 for every entry
            requested = self.default_execution_date(currency)
        else:
            key = (currency, requested)
            if key not in self._date_cache:
                self._date_cache[key] = check_execution_date(requested, currency, self.ref, self.client, self.now)
            if self._date_cache[key] is not None:
                return None
        return EntryScreen(
            max_cents=10**15 - 1 if max_cents is None else min(max_cents, 10**15 - 1),
            routing_verdicts=self._routing_cache,
            first_sightings=self._seen_e2e.add_new_digits,
            ascii_text_chars=ASCII_TEXT_CHARS,
            debtor_account=default.id,
            execution_date=requested,
            bic_verdicts=self._bic_cache,
            debtor_accounts=self._debtor_accounts,
            first_sightings_of_any=self._seen_e2e.add_new,
        )

    def default_execution_date(self, currency: str) -> date | None:
        if currency not in self._earliest:
            self._earliest[currency] = earliest_execution_date(self.ref, self.client, currency, self.now)
        return self._earliest[currency]

    def _amount_fast_path(self, ccy: str) -> tuple[Decimal, Decimal | None, Decimal | None] | None:
        """(quantum of the minor unit, currency maximum, client limit) for a known currency."""
        if ccy not in self._amount_params:
            currency = self.ref.currencies.get(ccy)
            self._amount_params[ccy] = (
                None
                if currency is None
                else (
                    Decimal(1).scaleb(-currency.minor_units),
                    currency.max_amount,
                    self.client.tx_limits.get(ccy),
                )
            )
        return self._amount_params[ccy]

    def check(self, tx: Transaction) -> list[Finding]:
        """All findings for ``tx`` (empty list: the transaction is valid).

        A rule added here must also be known to :class:`EntryScreen` (the NACHA fast path lets
        an entry skip this method only when the screen proves it clean, and so does the CSV
        reader): extend the screen, or make it refuse what the new rule looks at.
        ``test_nacha.py`` and ``test_csv_reader.py`` compare both paths.
        """
        out: list[Finding] = list(tx.format_findings) if tx.format_findings else []
        if tx.kind != "credit":
            out.append(Finding(R.AG03, f"{tx.kind} entries are not credit transfers and are not supported"))
        e2e, name, remit, instr = tx.end_to_end_id, tx.creditor_name, tx.remittance_info, tx.instruction_id
        # text fields: one regex pass over all of them; per-field detail only when something is off
        if (
            len(e2e) > 35
            or len(name) > 140
            or len(remit) > 140
            or len(instr) > 35
            or XML_BAD_CHARS.search(e2e + name + remit + instr)
        ):
            for value, limit, what, code in (
                (e2e, 35, "EndToEndId", R.FF08),
                (instr, 35, "InstrId", R.CH16),
                (name, 140, "creditor name", R.CH16),
                (remit, 140, "remittance information", R.CH16),
            ):
                f = check_text(value, limit, what, code)
                if f:
                    out.append(f)
        if not e2e:
            out.append(Finding(R.FF08, "EndToEndId is missing"))
        elif e2e != NOT_PROVIDED and not self._seen_e2e.add(e2e):
            out.append(Finding(R.DU04, f"EndToEndId {e2e!r} occurs more than once in the file"))
        # currency and amount
        ccy = tx.currency
        if ccy in self._ccy_cache:
            f = self._ccy_cache[ccy]
        else:
            f = self._ccy_cache[ccy] = check_currency(ccy, self.ref, self.client)
        if f:
            out.append(f)
        amount = tx.amount
        params = self._amount_fast_path(ccy)
        if (
            params is not None
            and amount is not None
            and amount.is_finite()
            and amount > 0
            and amount.adjusted() < 13
            and amount.quantize(params[0]) == amount
            and (params[1] is None or amount <= params[1])
            and (params[2] is None or amount <= params[2])
        ):
            pass  # the common case: positive, right decimals, within maxima
        else:
            out.extend(check_amount(amount, ccy, self.ref, self.client, tx.amount_text))
        # parties
        if not name.strip():
            out.append(Finding(R.BE22, "creditor name is missing"))
        iban = tx.creditor_iban
        if iban and not tx.creditor_routing and not tx.creditor_bic:
            # the common case, inline: an IBAN and nothing else
            if not iban_valid(iban):
                out.append(Finding(R.AC01, f"creditor IBAN {iban!r}: {iban_problem(iban)}"))
        else:
            self._check_creditor_account(tx, out)
        debtor = tx.debtor_account
        if debtor:
            if debtor not in self._debtor_accounts:
                self._check_debtor_account(tx, out)
        elif not self.client.accounts:  # no account given: the client's default one is used
            self._check_debtor_account(tx, out)
        # execution date
        d = tx.requested_execution_date
        if d is None and tx.date_text:
            out.append(Finding(R.DT01, f"requested execution date {tx.date_text!r} is not a valid date"))
        elif d is not None:
            key = (ccy, d)
            if key in self._date_cache:
                f = self._date_cache[key]
            else:
                f = self._date_cache[key] = check_execution_date(d, ccy, self.ref, self.client, self.now)
            if f:
                out.append(f)
        return out

    def _check_creditor_account(self, tx: Transaction, out: list[Finding]) -> None:
        if tx.creditor_iban:
            f = check_iban(tx.creditor_iban)
            if f:
                out.append(f)
        elif tx.creditor_account:
            acct = tx.creditor_account
            if len(acct) > 34 or XML_BAD_CHARS.search(acct):
                out.append(
                    Finding(
                        R.AC01,
                        f"creditor account {acct[:40]!r} is longer than 34 characters "
                        "or has control characters",
                    )
                )
            if not tx.creditor_routing and not tx.creditor_bic:
                out.append(
                    Finding(
                        R.RC01, "creditor agent (BIC or ABA routing number) is missing for a non-IBAN account"
                    )
                )
        else:
            out.append(Finding(R.AC01, "creditor account (IBAN or account number) is missing"))
        if tx.creditor_routing:
            r = tx.creditor_routing
            if r not in self._routing_cache:
                self._routing_cache[r] = check_routing(r, self.ref)
            if (routing := self._routing_cache[r]) is not None:
                out.append(routing)
        if tx.creditor_bic:
            b = tx.creditor_bic
            if b not in self._bic_cache:
                self._bic_cache[b] = check_bic(b, self.ref)
            if (bic := self._bic_cache[b]) is not None:
                out.append(bic)

    def _check_debtor_account(self, tx: Transaction, out: list[Finding]) -> None:
        if tx.debtor_account:
            if self.client.account(tx.debtor_account) is None:
                out.append(
                    Finding(
                        R.AC02,
                        f"debtor account {tx.debtor_account!r} is not an account of "
                        f"client {self.client.client_id}",
                    )
                )
        elif self.client.default_account(tx.currency) is None:
            out.append(Finding(R.AC02, f"client {self.client.client_id} has no debtor account"))


# --------------------------------------------------------------------------- file rules
def check_format_allowed(fmt: FileFormat, client: Client, layout_name: str = "") -> Finding | None:
    name = layout_name if fmt is FileFormat.CSV else fmt.family
    if name not in client.allowed_formats:
        return Finding(R.FF01, f"format {name or fmt.value} is not agreed for client {client.client_id}")
    return None


def check_duplicate_msg_id(msg_id: str, seen_msg_ids: Container[str]) -> Finding | None:
    """DU01: ``seen_msg_ids`` is whatever store the adapter keeps of earlier files."""
    if msg_id and msg_id in seen_msg_ids:
        return Finding(R.DU01, f"MsgId {msg_id!r} was already used in an earlier file")
    return None


def check_pain001_controls(header: FileHeader) -> list[Finding]:
    """Group header and PmtInf NbOfTxs/CtrlSum vs. recomputed values; DU02 duplicate PmtInfId."""
    out: list[Finding] = []
    if header.declared_nb_of_txs is not None and header.declared_nb_of_txs != header.nb_of_txs:
        out.append(
            Finding(
                R.AM19,
                f"GrpHdr/NbOfTxs declares {header.declared_nb_of_txs}, the file has {header.nb_of_txs}",
            )
        )
    if header.declared_ctrl_sum is not None and header.declared_ctrl_sum != header.ctrl_sum:
        out.append(
            Finding(
                R.AM16,
                f"GrpHdr/CtrlSum declares {header.declared_ctrl_sum}, "
                f"the amounts add up to {header.ctrl_sum}",
            )
        )
    seen: set[str] = set()
    for block in header.blocks:
        if block.block_id in seen:
            out.append(Finding(R.DU02, f"PmtInfId {block.block_id!r} is used by more than one block"))
        seen.add(block.block_id)
        if block.declared_nb_of_txs is not None and block.declared_nb_of_txs != block.nb_of_txs:
            out.append(
                Finding(
                    R.AM20,
                    f"PmtInf {block.block_id}: NbOfTxs declares "
                    f"{block.declared_nb_of_txs}, the block has {block.nb_of_txs}",
                )
            )
        if block.declared_ctrl_sum is not None and block.declared_ctrl_sum != block.ctrl_sum:
            out.append(
                Finding(
                    R.AM17,
                    f"PmtInf {block.block_id}: CtrlSum declares "
                    f"{block.declared_ctrl_sum}, the amounts add up to {block.ctrl_sum}",
                )
            )
    return out


def _hash10(value: int) -> int:
    return value % 10_000_000_000


def check_nacha_controls(header: FileHeader) -> list[Finding]:
    """Batch control (8) and file control (9) records vs. recomputed counts, hash and totals."""
    N = NACHA_ERROR_CODES
    out: list[Finding] = []
    for b in header.blocks:
        name = f"batch {b.block_id}"
        if b.declared_entry_addenda != b.entry_addenda:
            out.append(
                Finding(
                    N["batch-entry-count"],
                    f"{name}: control entry/addenda count {b.declared_entry_addenda} != {b.entry_addenda}",
                )
            )
        if b.declared_entry_hash != _hash10(b.entry_hash):
            out.append(
                Finding(
                    N["batch-entry-hash"],
                    f"{name}: control entry hash {b.declared_entry_hash} != {_hash10(b.entry_hash)}",
                )
            )
        if b.declared_debit_cents != b.debit_cents:
            out.append(
                Finding(
                    N["batch-totals"],
                    f"{name}: control total debit {b.declared_debit_cents} != {b.debit_cents} (cents)",
                )
            )
        if b.declared_credit_cents != b.credit_cents:
            out.append(
                Finding(
                    N["batch-totals"],
                    f"{name}: control total credit {b.declared_credit_cents} != {b.credit_cents} (cents)",
                )
            )
    fc = header.nacha
    if fc is None:
        return out
    entry_addenda = sum(b.entry_addenda for b in header.blocks)
    entry_hash = _hash10(sum(b.entry_hash for b in header.blocks))
    debit = sum(b.debit_cents for b in header.blocks)
    credit = sum(b.credit_cents for b in header.blocks)
    if fc.declared_batch_count != len(header.blocks):
        out.append(
            Finding(
                N["file-batch-count"],
                f"file control batch count {fc.declared_batch_count} != {len(header.blocks)}",
            )
        )
    if fc.declared_entry_addenda != entry_addenda:
        out.append(
            Finding(
                N["file-entry-count"],
                f"file control entry/addenda count {fc.declared_entry_addenda} != {entry_addenda}",
            )
        )
    if fc.declared_entry_hash != entry_hash:
        out.append(
            Finding(N["file-entry-hash"], f"file control entry hash {fc.declared_entry_hash} != {entry_hash}")
        )
    if fc.declared_debit_cents != debit:
        out.append(
            Finding(N["file-totals"], f"file control total debit {fc.declared_debit_cents} != {debit}")
        )
    if fc.declared_credit_cents != credit:
        out.append(
            Finding(N["file-totals"], f"file control total credit {fc.declared_credit_cents} != {credit}")
        )
    blocks = -(-fc.record_count // 10)
    if fc.declared_block_count != blocks:
        out.append(
            Finding(N["block-count"], f"file control block count {fc.declared_block_count} != {blocks}")
        )
    return out


def check_file_limits(totals: Mapping[str, Decimal], client: Client) -> list[Finding]:
    """Per-file limit per currency (sum of the file's accepted-so-far amounts)."""
    out = []
    for ccy, total in sorted(totals.items()):
        limit = client.file_limits.get(ccy)
        if limit is not None and total > limit:
            out.append(
                Finding(R.AM14, f"file total {total} {ccy} exceeds the client's per-file limit {limit}")
            )
    return out


def check_file_controls(header: FileHeader) -> list[Finding]:
    if header.format is FileFormat.NACHA:
        return check_nacha_controls(header)
    if header.format in (FileFormat.PAIN001_03, FileFormat.PAIN001_09):
        return check_pain001_controls(header)
    return []
