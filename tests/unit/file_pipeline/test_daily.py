"""The daily limit (file_pipeline.domain.daily): per client, currency and requested execution
date, over the file and the client's earlier live files, in file order; on both ways a file is
validated (the readers' screened fast path and the rules one by one)."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest

from devstack.samples import generate_csv, generate_nacha
from file_pipeline.domain.daily import (
    MAX_DAYS_PER_FILE,
    DailyLedger,
    DailyUsage,
    DayTotal,
    amounts_by_key,
    amounts_for_record,
    day_key,
    parse_day_key,
)
from file_pipeline.domain.reference import ReferenceData, load_seed_entities
from file_pipeline.domain.validator import FileValidation, ValidationResult, codes
from file_pipeline.formats.csv_reader import CsvReader
from file_pipeline.formats.nacha import NachaReader

from .conftest import NOW

MON, TUE = date(2026, 11, 23), date(2026, 11, 24)
HEADER = ("EndToEndId,DebtorIBAN,CreditorName,CreditorIBAN,CreditorAccount,CreditorRouting,CreditorBIC,Amount,"
          "Currency,ExecutionDate,Remittance")


def reference(**clients: dict) -> ReferenceData:
    """The seed with some client rows changed (``ACME001={"DailyLimits": {...}}``)."""
    rows = load_seed_entities()
    for row in rows:
        if row["PartitionKey"] == "CLIENT" and row["RowKey"] in clients:
            row.update({k: json.dumps(v) if isinstance(v, dict) else v for k, v in clients[row["RowKey"]].items()})
    return ReferenceData.from_entities(rows)


def tx(e2e: str, amount: str, ccy: str = "EUR", day: date = MON) -> str:
    if ccy == "USD":
        return f"{e2e},000123456789,John Smith,,123456789012,021000021,,{amount},USD,{day},"
    if ccy == "GBP":
        return f"{e2e},,Jane Doe,GB29NWBK60161331926819,,,,{amount},GBP,{day},"
    return f"{e2e},DE89370400440532013000,Anna Schmidt,DE62370400440532013001,,,COBADEFFXXX,{amount},EUR,{day},"


def csv_file(*rows: str) -> bytes:
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode()


class _OneByOne:
    """A reader without ``screened``: every transaction goes through the rules one by one."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.header = reader.header

    def __iter__(self):
        return iter(self._reader)


def run_csv(ref: ReferenceData, content: bytes, *, client: str = "ACME001", used=None,
            one_by_one: bool = False) -> tuple[ValidationResult, list[str]]:
    reader = CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv, file_id="F-1")
    v = FileValidation(_OneByOne(reader) if one_by_one else reader, ref, client, NOW, layout_name="CSV-v1",
                       daily_used=used)
    accepted = [t.end_to_end_id for t in v.accepted()]
    return v.result, accepted


def rejected(result: ValidationResult) -> dict[str, list[str]]:
    return {r.end_to_end_id: codes(r.findings) for r in result.rejections}


def descriptions(result: ValidationResult) -> list[str]:
    return [f.description for r in result.rejections for f in r.findings]


BOTH_WAYS = pytest.mark.parametrize("one_by_one", [False, True], ids=["screened", "one-by-one"])


# ------------------------------------------------------------------------------------------ the rule
@BOTH_WAYS
def test_exactly_at_the_limit_passes_and_one_cent_over_is_am14(one_by_one):
    ref = reference(ACME001={"DailyLimits": {"EUR": "1000.00"}})
    result, accepted = run_csv(ref, csv_file(tx("A1", "600.00"), tx("A2", "400.00")), one_by_one=one_by_one)
    assert accepted == ["A1", "A2"] and result.rejected == 0 and result.group_status == "ACCP"
    assert result.daily.reserved == {("EUR", MON): Decimal("1000.00")}

    result, accepted = run_csv(ref, csv_file(tx("B1", "600.00"), tx("B2", "400.01")), one_by_one=one_by_one)
    assert rejected(result) == {"B2": ["AM14"]}
    [why] = descriptions(result)
    assert why == ("amount 400.01 EUR would take the client's EUR total for execution date 2026-11-23 to "
                   "1000.01, over its daily limit of 1000.00 EUR (600.00 already used that day)")
    assert result.daily.reserved == {("EUR", MON): Decimal("600.00")}


@BOTH_WAYS
def test_each_currency_and_execution_date_has_its_own_total(one_by_one):
    ref = reference(ACME001={"DailyLimits": {"EUR": "1000.00", "USD": "500.00"}, "RejectionPolicy": "pass-valid"})
    content = csv_file(
        tx("E1", "900.00"), tx("U1", "500.00", "USD"), tx("E2", "900.00", day=TUE), tx("G1", "5000.00", "GBP"),
        tx("E3", "100.00"), tx("U2", "0.01", "USD"), tx("E4", "100.01", day=TUE), tx("E5", "100.00", day=TUE),
    )
    result, accepted = run_csv(ref, content, one_by_one=one_by_one)
    assert accepted == ["E1", "U1", "E2", "G1", "E3", "E5"]
    assert rejected(result) == {"U2": ["AM14"], "E4": ["AM14"]}
    assert result.daily.reserved == {("EUR", MON): Decimal("1000.00"), ("USD", MON): Decimal("500.00"),
                                     ("EUR", TUE): Decimal("1000.00")}  # GBP has no daily limit: not counted


@BOTH_WAYS
def test_earlier_files_usage_counts_and_a_later_smaller_transaction_may_still_fit(one_by_one):
    ref = reference(ACME001={"DailyLimits": {"EUR": "1000.00"}, "RejectionPolicy": "pass-valid"})
    used = {("EUR", MON): Decimal("950.00"), ("EUR", TUE): Decimal("1000.00")}
    content = csv_file(tx("A1", "40.00"), tx("A2", "20.00"), tx("A3", "10.00"), tx("A4", "0.01", day=TUE))
    result, accepted = run_csv(ref, content, used=used, one_by_one=one_by_one)
    assert accepted == ["A1", "A3"] and rejected(result) == {"A2": ["AM14"], "A4": ["AM14"]}
    assert "(990.00 already used that day)" in descriptions(result)[0]
    assert result.daily.reserved == {("EUR", MON): Decimal("50.00")}  # only this file's own amounts
    assert result.group_status == "PART"


def test_the_client_policy_decides_for_the_file():
    content = csv_file(tx("A1", "600.00"), tx("A2", "500.00"), tx("A3", "400.00"))
    reject_file = reference(ACME001={"DailyLimits": {"EUR": "1000.00"}})
    result, _ = run_csv(reject_file, content)
    assert result.group_status == "RJCT" and rejected(result) == {"A2": ["AM14"]}
    assert "policy reject-file" in result.group_reasons()[0].description
    pass_valid = reference(ACME001={"DailyLimits": {"EUR": "1000.00"}, "RejectionPolicy": "pass-valid"})
    result, accepted = run_csv(pass_valid, content)
    assert result.group_status == "PART" and accepted == ["A1", "A3"] and result.accepted_sum == Decimal("1000.00")
    assert result.rejected_sum == Decimal("500.00")


def test_a_transaction_rejected_for_another_reason_uses_nothing():
    ref = reference(ACME001={"DailyLimits": {"EUR": "1000.00"}, "RejectionPolicy": "pass-valid"})
    bad_iban = tx("A1", "900.00").replace("DE62370400440532013001", "DE00370400440532013001")
    result, accepted = run_csv(ref, csv_file(bad_iban, tx("A2", "1000.00")))
    assert accepted == ["A2"] and rejected(result) == {"A1": ["AC01"]}


def test_no_daily_limits_entry_means_no_daily_limit(ref):
    assert ref.clients["INITECH03"].daily_limits == {} and "GBP" not in ref.clients["ACME001"].daily_limits
    content = csv_file(*(tx(f"G{i}", "150000.00", "GBP") for i in range(30)))  # 4.5M GBP in one day
    result, accepted = run_csv(ref, content)
    assert len(accepted) == 30 and result.rejected == 0 and result.daily.reserved == {}


# ------------------------------------------------------------------------------------------ both ways agree
def _outcome(result: ValidationResult, accepted: list[str]) -> tuple:
    return (accepted, [(r.index, r.end_to_end_id, codes(r.findings), [f.description for f in r.findings])
                       for r in result.rejections],
            result.total, result.accepted, result.rejected, str(result.accepted_sum), str(result.rejected_sum),
            sorted((k, str(v)) for k, v in result.totals_by_currency.items()),
            sorted((k, str(v)) for k, v in result.daily.reserved.items()))


def test_a_large_csv_gets_the_same_daily_verdicts_both_ways():
    """Long runs of screened rows, rows the screen leaves to the rules (``99.5``, a bad IBAN) in
    between, two days and two currencies: the fast path decides exactly as the rules do."""
    import csv as csv_module

    buf = io.BytesIO()
    total = generate_csv(buf, 4000, execution_date=MON)
    head, *rows = [line.split(",") for line in buf.getvalue().decode().splitlines()]
    for i, row in enumerate(rows):
        if 1500 <= i < 2500:
            row[9] = TUE.isoformat()
        if 3000 <= i < 3100 or i % 500 == 7:
            row[1], row[3], row[4], row[5], row[6], row[8] = "000123456789", "", "123456789012", "021000021", "", "USD"
        if i % 11 == 5:
            row[7] = "99.5"  # valid, but not digits.dd: the rules see it one by one
        if i % 13 == 6:
            row[3] = row[3][:2] + "00" + row[3][4:]  # AC01
    out = io.StringIO()
    writer = csv_module.writer(out, lineterminator="\r\n")
    writer.writerow(head)
    writer.writerows(rows)
    content = out.getvalue().encode()
    limit = (total / 3).quantize(Decimal("0.01"))
    ref = reference(ACME001={"DailyLimits": {"EUR": str(limit), "USD": "20000.00"}, "RejectionPolicy": "pass-valid",
                             "FileLimits": {"EUR": "999999999.00", "USD": "999999999.00"}})
    used = {("EUR", TUE): limit / 2}
    screened = _outcome(*run_csv(ref, content, used=used))
    one_by_one = _outcome(*run_csv(ref, content, used=used, one_by_one=True))
    assert screened == one_by_one
    over = [codes for _, _, codes, _ in screened[1] if codes == ["AM14"]]
    assert len(over) > 100  # the limit was reached on the way, and later rows kept being judged
    reserved = dict(screened[-1])
    assert Decimal(reserved[("EUR", MON)]) <= limit and Decimal(reserved[("EUR", TUE)]) <= limit / 2
    assert Decimal(reserved[("USD", MON)]) <= Decimal("20000.00")
    assert limit - Decimal(reserved[("EUR", MON)]) < Decimal("5000.00")  # filled up to the largest amount


def test_a_nacha_file_gets_the_same_daily_verdicts_both_ways():
    buf = io.BytesIO()
    cents = generate_nacha(buf, 3000, effective_date=MON, entries_per_batch=700)
    limit = (Decimal(cents).scaleb(-2) / 2).quantize(Decimal("0.01"))
    ref = reference(INITECH03={"DailyLimits": {"USD": str(limit)}})
    out = []
    for wrap in (lambda r: r, _OneByOne):
        v = FileValidation(wrap(NachaReader(io.BytesIO(buf.getvalue()))), ref, "INITECH03", NOW)
        accepted = [t.end_to_end_id for t in v.accepted()]
        out.append(_outcome(v.result, accepted))
    assert out[0] == out[1]
    assert out[0][4] > 1000 and out[0][3] > 1000  # about half rejected (AM14), half accepted
    assert Decimal(dict(out[0][-1])[("USD", MON)]) <= limit


# ------------------------------------------------------------------------------------------ the ledger
def client(ref: ReferenceData, limits: dict[str, str]):
    return reference(ACME001={"DailyLimits": limits}).clients["ACME001"]


def test_a_file_reserves_on_a_bounded_number_of_days(ref):
    ledger = DailyLedger(client(ref, {"EUR": "100.00"}), {})
    first = date(2027, 1, 1)
    for i in range(MAX_DAYS_PER_FILE):
        assert ledger.admit("EUR", first + timedelta(days=i), Decimal("1.00")) is None
    refused = ledger.admit("EUR", first + timedelta(days=MAX_DAYS_PER_FILE), Decimal("1.00"))
    assert refused is not None and refused.code.value == "NARR" and f"on {MAX_DAYS_PER_FILE}" in refused.description
    assert ledger.room_cents("EUR", first + timedelta(days=MAX_DAYS_PER_FILE)) == 0
    assert ledger.admit("EUR", first, Decimal("1.00")) is None  # a day it already holds is no new one
    assert ledger.admit("GBP", first + timedelta(days=500), Decimal("1.00")) is None  # no limit: not counted
    assert ledger.over_limit == 0 and len(ledger.reserved) == MAX_DAYS_PER_FILE


def test_a_transaction_without_a_day_cannot_be_judged_and_is_rejected(ref):
    ledger = DailyLedger(client(ref, {"EUR": "100.00"}), {})
    refused = ledger.admit("EUR", None, Decimal("1.00"))
    assert refused is not None and refused.code.value == "DT01" and "daily limit of 100.00" in refused.description
    assert ledger.room_cents("EUR", None) == 0 and ledger.reserved == {}


def test_room_in_cents_is_rounded_down_and_never_negative(ref):
    ledger = DailyLedger(client(ref, {"EUR": "100.00", "BHD": "10.005"}), {("EUR", MON): Decimal("100.50")})
    assert ledger.room_cents("EUR", MON) == 0  # over already (a limit lowered since): nothing fits
    assert ledger.room_cents("BHD", MON) == 1000  # 10.005 leaves room for 10.00, not 10.01
    ledger.add_cents("BHD", MON, 999)
    assert ledger.reserved == {("BHD", MON): Decimal("9.99")} and ledger.room_cents("BHD", MON) == 1
    assert ledger.admit("BHD", MON, Decimal("0.015")) is None  # Decimal admission is exact
    assert ledger.admit("BHD", MON, Decimal("0.001")) is not None


def test_a_changed_total_keeps_the_verdict_only_if_nothing_was_refused_and_everything_still_fits(ref):
    ledger = DailyLedger(client(ref, {"EUR": "100.00"}), {("EUR", MON): Decimal("10.00")})
    assert ledger.admit("EUR", MON, Decimal("60.00")) is None
    assert ledger.holds_under({("EUR", MON): Decimal("40.00")})  # 40 + 60 = 100: still fits
    assert ledger.holds_under({})  # released meanwhile: fits even better
    assert not ledger.holds_under({("EUR", MON): Decimal("40.01")})
    assert ledger.admit("EUR", MON, Decimal("30.01")) is not None  # refused: fewer used might have let it in
    assert not ledger.holds_under({("EUR", MON): Decimal("10.00")})


def test_usage_reserves_and_releases_against_the_versions_read():
    usage = DailyUsage([DayTotal("EUR", MON, Decimal("100.00"), "v7"), DayTotal("EUR", TUE, Decimal("5.00"), "v8")])
    assert usage.amounts == {("EUR", MON): Decimal("100.00"), ("EUR", TUE): Decimal("5.00")}
    assert usage.reserve({("EUR", MON): Decimal("0.50"), ("USD", MON): Decimal("2")}) == [
        DayTotal("EUR", MON, Decimal("100.50"), "v7"), DayTotal("USD", MON, Decimal("2"), None)]
    assert usage.release({("EUR", MON): Decimal("40.00"), ("EUR", TUE): Decimal("9.00"),
                          ("USD", MON): Decimal("1.00")}) == [
        DayTotal("EUR", MON, Decimal("60.00"), "v7"),
        DayTotal("EUR", TUE, Decimal("0"), "v8"),  # never below zero
    ]  # USD: nothing stored, nothing of the file in it


def test_day_keys_round_trip_and_bad_keys_are_refused():
    amounts = {("EUR", MON): Decimal("1250.00"), ("USD", TUE): Decimal("0.01")}
    as_record = amounts_for_record(amounts)
    assert as_record == {"EUR-2026-11-23": "1250.00", "USD-2026-11-24": "0.01"}
    assert amounts_by_key(as_record) == amounts and parse_day_key(day_key("CHF", MON)) == ("CHF", MON)
    for bad in ("EUR", "EURO-2026-11-23", "EUR-2026-13-01"):
        with pytest.raises(ValueError, match=r"daily-limit key|month must be"):
            parse_day_key(bad)
