from datetime import date, time
from decimal import Decimal

import pytest

from file_pipeline.domain.reference import (
    PASS_VALID,
    REJECT_FILE,
    ReferenceData,
    ReferenceDataError,
    check_table_key,
    load_seed_entities,
)


def test_seed_has_the_realistic_small_set(ref):
    assert {"EUR", "USD", "GBP", "JPY", "BHD", "CHF"} <= set(ref.currencies)
    assert (
        ref.currencies["JPY"].minor_units,
        ref.currencies["EUR"].minor_units,
        ref.currencies["BHD"].minor_units,
    ) == (0, 2, 3)
    assert len(ref.banks) >= 30 and "COBADEFFXXX" in ref.banks
    assert len(ref.aba) >= 10 and "021000021" in ref.aba
    assert date(2026, 12, 25) in ref.holidays["XECB"] and date(2027, 3, 26) in ref.holidays["XECB"]
    assert date(2026, 11, 26) in ref.holidays["XFED"] and date(2027, 7, 5) in ref.holidays["XFED"]
    policies = {c.rejection_policy for c in ref.clients.values()}
    assert policies == {REJECT_FILE, PASS_VALID}
    assert ref.csv_layout_for(ref.clients["ACME001"]).name == "CSV-v1"
    eu = ref.csv_layout_for(ref.clients["GLOBEX02"])
    assert (eu.delimiter, eu.decimal_separator, eu.encoding) == (";", ",", "cp1252")


def test_seed_keys_obey_table_rules():
    rows = load_seed_entities()
    assert rows
    for row in rows:
        for key in (row["PartitionKey"], row["RowKey"]):
            assert check_table_key(key) == key
        for value in row.values():  # Table properties are scalars only
            assert isinstance(value, (str, int, bool, float))


def test_seed_aba_numbers_have_valid_check_digits(ref):
    from file_pipeline.domain.agents import aba_check_digit_ok

    assert all(aba_check_digit_ok(r) for r in ref.aba)


@pytest.mark.parametrize("key", ["CCY/EUR", "a\\b", "a#b", "what?", "", "tab\there", "x" * 1025])
def test_forbidden_table_keys_are_rejected(key):
    with pytest.raises(ReferenceDataError):
        check_table_key(key)


def test_reference_data_is_frozen(ref):
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        ref.currencies = {}
    with pytest.raises(TypeError):
        ref.currencies["XXX"] = None  # MappingProxyType


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"PartitionKey": "WHAT", "RowKey": "X"}, "unknown record type"),
        ({"PartitionKey": "CCY", "RowKey": "EUR"}, "MinorUnits"),
        ({"PartitionKey": "CLIENT", "RowKey": "C1", "RejectionPolicy": "maybe"}, "RejectionPolicy"),
        ({"PartitionKey": "CLIENT", "RowKey": "C1", "Accounts": "[not json"}, "JSON"),
        ({"PartitionKey": "CUTOFF", "RowKey": "X", "Time": "25:99", "TimeZone": "Europe/Berlin"}, "time"),
        ({"PartitionKey": "CUTOFF", "RowKey": "X", "Time": "10:00", "TimeZone": "Mars/Base"}, "CUTOFF/X"),
        ({"PartitionKey": "FORMAT", "RowKey": "F", "Kind": "csv", "Columns": '{"amount": "A"}'}, "mandatory"),
        (
            {
                "PartitionKey": "FORMAT",
                "RowKey": "F",
                "Kind": "csv",
                "Encoding": "nope",
                "Columns": '{"end_to_end_id": 0, "amount": 1, "currency": 2, "creditor_name": 3}',
            },
            "FORMAT/F",
        ),
        ({"PartitionKey": "FORMAT", "RowKey": "F", "Kind": "xlsx"}, "Kind"),
        ({"PartitionKey": "HOLIDAY-XECB", "RowKey": "2026-13-01"}, "HOLIDAY-XECB"),
    ],
)
def test_malformed_rows_fail_loudly(row, match):
    with pytest.raises(ReferenceDataError, match=match):
        ReferenceData.from_entities([row])


def test_currency_with_unknown_cutoff_is_rejected():
    with pytest.raises(ReferenceDataError, match="unknown cut-off"):
        ReferenceData.from_entities(
            [{"PartitionKey": "CCY", "RowKey": "EUR", "MinorUnits": 2, "Cutoff": "NOPE"}]
        )


def test_client_properties_are_parsed(ref):
    acme = ref.clients["ACME001"]
    assert acme.tx_limits["EUR"] == Decimal("250000.00")
    assert acme.allowed_currencies == {"EUR", "USD", "GBP", "CHF"}
    assert acme.default_account("USD").aba == "021000021"
    assert acme.default_account("EUR").is_iban
    assert not acme.default_account("USD").is_iban
    assert ref.clients["GLOBEX02"].cutoff_time == time(13, 0)


def test_bank_lookup_accepts_bic8_and_business_days(ref):
    assert ref.bank("COBADEFF").name.startswith("Commerzbank")
    assert ref.bank("NOPEDEFF") is None
    assert not ref.is_business_day(date(2026, 12, 25), "XECB")
    assert ref.is_business_day(date(2026, 11, 26), "XECB")  # Thanksgiving is a TARGET day
    assert not ref.is_business_day(date(2026, 11, 26), "XFED")
    assert ref.next_business_day(date(2026, 12, 24), "XECB", include=False) == date(2026, 12, 28)
    assert ref.add_business_days(date(2026, 11, 20), 1, "WEEKEND") == date(2026, 11, 23)
