"""The fast path's screen: an entry it can show to be clean with a few comparisons of plain values
gets no finding from :meth:`~file_pipeline.domain.rules.TransactionRules.check` (the reference
path; the equivalence tests hold the two to the same verdicts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from file_pipeline.domain.model import Finding
from file_pipeline.domain.reason_codes import IsoReason

R = IsoReason


@dataclass(frozen=True, slots=True)
class EntryScreen:
    """What lets a reader of fixed-layout entries (NACHA) skip :meth:`TransactionRules.check`
    for an entry it can show to be clean with a few comparisons of plain values.

    Made by :meth:`TransactionRules.entry_screen` for one currency and execution date, only
    when neither gives a finding. An entry with no format finding, a credit, no IBAN, no BIC
    and no remittance text, and all of: an amount of ``0 < cents <= max_cents`` hundredths, a
    non-empty creditor name and account (at most 34 characters), text fields within their
    lengths and made only of ``ascii_text_chars`` (the ASCII characters :func:`check_text`
    allows), a routing number whose cached verdict in ``routing_verdicts`` is ``None``, and an
    EndToEndId of 1 to 15 ASCII digits that ``first_sightings`` (DU04 memory) counts as new,
    gets no finding from :meth:`TransactionRules.check`, and the validator would give it
    ``debtor_account`` and ``execution_date``. An entry that fails the screen goes through
    :meth:`TransactionRules.check` like any other, which words the findings.

    ``first_sightings`` takes the EndToEndIds of entries that passed every other condition, in
    file order, and says how many of them, from the first, were new; the entry it stopped at
    was seen before. The reader must ask it last, and before any entry after those goes through
    :meth:`check` (DU04 flags the later of two occurrences, so the memory must see the ids in
    file order); the entry it stopped at goes through :meth:`check`, which finds the repeat
    again, and the ones after it are asked about anew.

    A CSV row (currency and execution-date text picking the screen) passes when it has no format
    finding, an amount written as ASCII ``digits.dd`` (so its cents add up to the same
    :class:`~decimal.Decimal` sums) with ``0 < cents <= max_cents``, a non-empty EndToEndId of
    at most 35 and creditor name of at most 140 characters, remittance text of at most 140 and
    an InstrId of at most 35, all printable (``str.isprintable`` refuses every character
    :func:`check_text` refuses), either an IBAN that :func:`iban_valid` accepts or a
    printable account of 1 to 34 characters with a routing number or BIC, a routing number and
    a BIC (when given) whose cached verdicts in ``routing_verdicts`` / ``bic_verdicts`` are
    ``None``, a debtor account that is empty or one of ``debtor_accounts``, and, last, an
    EndToEndId that ``first_sightings_of_any`` counts as new (asked as ``first_sightings`` is,
    for ids of any form).
    """

    max_cents: int
    routing_verdicts: Mapping[str, Finding | None]
    first_sightings: Callable[[Sequence[str]], int]
    ascii_text_chars: bytes
    debtor_account: str
    execution_date: date | None
    # for CSV rows (see :meth:`file_pipeline.formats.csv_reader.CsvReader.screened`)
    bic_verdicts: Mapping[str, Finding | None]
    debtor_accounts: frozenset[str]
    first_sightings_of_any: Callable[[Sequence[str]], int]
