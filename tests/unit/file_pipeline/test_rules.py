"""Every reason code has a test that triggers it (see test_every_reason_code_is_triggered)."""

import dataclasses
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from file_pipeline.domain import amounts, dates, rules
from file_pipeline.domain import iban as iban_rules
from file_pipeline.domain.iban import iban_problem
from file_pipeline.domain.model import FileFormat, FileHeader, FileRejected, PaymentBlock, Transaction
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import CsvLayout
from file_pipeline.domain.rules import TransactionRules
from file_pipeline.domain.validator import FileValidation, codes
from file_pipeline.formats.csv_reader import CsvReader
from file_pipeline.formats.pain001_reader import Pain001Reader

from .conftest import NOW, data_bytes, data_stream

R = IsoReason
BERLIN_1600 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # 16:00 in Frankfurt, after SEPA cut-off

BASE = Transaction(
    index=1,
    line=2,
    end_to_end_id="E2E-1",
    amount=Decimal("100.00"),
    currency="EUR",
    creditor_name="Anna Schmidt",
    creditor_iban="DE89370400440532013000",
    creditor_bic="COBADEFFXXX",
    requested_execution_date=date(2026, 11, 23),
)


def check(ref, client="ACME001", now=NOW, **changes):
    tx = dataclasses.replace(BASE, **changes)
    return codes(TransactionRules(ref, ref.clients[client], now).check(tx))


# (id, client, now, changes, expected codes)
TX_CASES = [
    ("valid", "ACME001", NOW, {}, []),
    ("iban checksum", "ACME001", NOW, {"creditor_iban": "DE00370400440532013000"}, ["AC01"]),
    ("iban length", "ACME001", NOW, {"creditor_iban": "DE8937040044053201300"}, ["AC01"]),
    ("iban national format", "ACME001", NOW, {"creditor_iban": "GB29NWBK6016133192681X"}, ["AC01"]),
    ("iban unknown country", "ACME001", NOW, {"creditor_iban": "US12345678901234"}, ["AC01"]),
    ("account missing", "ACME001", NOW, {"creditor_iban": ""}, ["AC01"]),
    ("debtor not client's", "ACME001", NOW, {"debtor_account": "DE62370400440532013001"}, ["AC02"]),
    ("debit entry", "ACME001", NOW, {"kind": "debit"}, ["AG03"]),
    ("zero amount", "ACME001", NOW, {"amount": Decimal("0.00")}, ["AM01"]),
    (
        "currency maximum",
        "GLOBEX02",
        NOW,
        {
            "amount": Decimal("60000000.000"),
            "currency": "BHD",
            "creditor_iban": "BH67BMAG00001299123456",
            "creditor_bic": "BMAGBHBMXXX",
            "requested_execution_date": date(2026, 11, 24),
        },
        ["AM02", "AM14"],
    ),
    ("currency not agreed", "ACME001", NOW, {"currency": "JPY", "amount": Decimal("100")}, ["AM03"]),
    ("currency disabled", "GLOBEX02", NOW, {"currency": "SEK"}, ["AM03"]),
    ("currency not ISO", "ACME001", NOW, {"currency": "XYZ"}, ["AM03"]),
    ("currency malformed", "ACME001", NOW, {"currency": "eur"}, ["AM11"]),
    ("currency missing", "ACME001", NOW, {"currency": ""}, ["AM11"]),
    ("amount unparsable", "ACME001", NOW, {"amount": None, "amount_text": "12,5x"}, ["AM12"]),
    ("amount negative", "ACME001", NOW, {"amount": Decimal("-5.00")}, ["AM12"]),
    ("client limit", "ACME001", NOW, {"amount": Decimal("250000.01")}, ["AM14"]),
    ("creditor name missing", "ACME001", NOW, {"creditor_name": "  "}, ["BE22"]),
    ("too far ahead", "ACME001", NOW, {"requested_execution_date": date(2027, 3, 1)}, ["CH03"]),
    ("in the past", "ACME001", NOW, {"requested_execution_date": date(2026, 11, 19)}, ["CH04"]),
    ("name too long", "ACME001", NOW, {"creditor_name": "x" * 141}, ["CH16"]),
    ("remittance too long", "ACME001", NOW, {"remittance_info": "r" * 141}, ["CH16"]),
    ("control character", "ACME001", NOW, {"creditor_name": "Anna\x07"}, ["CH16"]),
    (
        "JPY with decimals",
        "GLOBEX02",
        NOW,
        {
            "currency": "JPY",
            "amount": Decimal("1500.50"),
            "creditor_iban": "",
            "creditor_account": "1234567",
            "creditor_bic": "BOTKJPJTXXX",
            "requested_execution_date": date(2026, 11, 24),
        },
        ["CH20"],
    ),
    ("EUR with 3 decimals", "ACME001", NOW, {"amount": Decimal("10.005")}, ["CH20"]),
    (
        "date unparsable",
        "ACME001",
        NOW,
        {"requested_execution_date": None, "date_text": "31.02.2026"},
        ["DT01"],
    ),
    ("weekend", "ACME001", NOW, {"requested_execution_date": date(2026, 11, 21)}, ["DT03"]),
    ("TARGET holiday", "ACME001", NOW, {"requested_execution_date": date(2026, 12, 25)}, ["DT03"]),
    (
        "Fed holiday",
        "ACME001",
        NOW,
        {
            "currency": "USD",
            "creditor_iban": "",
            "creditor_account": "123456789",
            "creditor_routing": "021000021",
            "creditor_bic": "",
            "requested_execution_date": date(2026, 11, 26),
        },
        ["DT03"],
    ),
    ("after cut-off", "ACME001", BERLIN_1600, {"requested_execution_date": date(2026, 11, 20)}, ["DT05"]),
    (
        "lead day (GBP)",
        "ACME001",
        NOW,
        {
            "currency": "GBP",
            "creditor_iban": "GB29NWBK60161331926819",
            "creditor_bic": "NWBKGB2LXXX",
            "requested_execution_date": date(2026, 11, 20),
        },
        ["DT05"],
    ),
    ("e2e missing", "ACME001", NOW, {"end_to_end_id": ""}, ["FF08"]),
    ("e2e too long", "ACME001", NOW, {"end_to_end_id": "E" * 36}, ["FF08"]),
    (
        "row format",
        "ACME001",
        NOW,
        {"format_findings": (rules.Finding(R.FF01, "row has 3 fields"),)},
        ["FF01"],
    ),
    ("bic malformed", "ACME001", NOW, {"creditor_bic": "COBA-DEFF"}, ["RC01"]),
    ("bic unknown", "ACME001", NOW, {"creditor_bic": "ZZZZDEFFXXX"}, ["RC01"]),
    ("bic unreachable", "ACME001", NOW, {"creditor_bic": "DRESDEFFXXX"}, ["RC01"]),
    (
        "non-IBAN without agent",
        "ACME001",
        NOW,
        {"creditor_iban": "", "creditor_account": "1234", "creditor_bic": ""},
        ["RC01"],
    ),
    (
        "routing check digit",
        "ACME001",
        NOW,
        {
            "currency": "USD",
            "creditor_iban": "",
            "creditor_account": "123456789",
            "creditor_routing": "021000022",
            "creditor_bic": "",
        },
        ["RC10"],
    ),
    (
        "routing not in directory",
        "ACME001",
        NOW,
        {
            "currency": "USD",
            "creditor_iban": "",
            "creditor_account": "123456789",
            "creditor_routing": "011000015",
            "creditor_bic": "",
        },
        ["RC10"],
    ),
]


@pytest.mark.parametrize(("name", "client", "now", "changes", "expected"), TX_CASES, ids=[c[0] for c in TX_CASES])
def test_transaction_rules(ref, name, client, now, changes, expected):
    assert check(ref, client, now, **changes) == expected


def test_cut_off_boundaries(ref):
    monday = date(2026, 11, 23)
    # Friday 14:59 Frankfurt: same day is fine; 15:00 is too late; Monday is always fine
    before = datetime(2026, 11, 20, 13, 59, tzinfo=UTC)
    at = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    assert check(ref, now=before, requested_execution_date=date(2026, 11, 20)) == []
    assert check(ref, now=at, requested_execution_date=date(2026, 11, 20)) == ["DT05"]
    assert check(ref, now=at, requested_execution_date=monday) == []
    # client-specific cut-off: GLOBEX02 closes at 13:00 instead of 15:00
    g = {"creditor_iban": "FR7630004000031234567890143", "creditor_bic": "BNPAFRPPXXX"}
    half_past_one = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    assert check(ref, "GLOBEX02", half_past_one, requested_execution_date=date(2026, 11, 20), **g) == ["DT05"]
    assert check(ref, "ACME001", half_past_one, requested_execution_date=date(2026, 11, 20)) == []


def test_earliest_date_skips_weekend_and_holidays(ref):
    christmas_eve_late = datetime(2026, 12, 24, 16, 0, tzinfo=UTC)
    acme = ref.clients["ACME001"]
    assert dates.earliest_execution_date(ref, acme, "EUR", christmas_eve_late) == date(2026, 12, 28)
    assert dates.earliest_execution_date(ref, acme, "USD", NOW) == date(2026, 11, 20)
    assert dates.earliest_execution_date(ref, acme, "GBP", NOW) == date(2026, 11, 23)
    assert dates.earliest_execution_date(ref, acme, "XXX", NOW) is None


def test_rules_need_an_aware_clock(ref):
    with pytest.raises(ValueError, match="timezone-aware"):
        TransactionRules(ref, ref.clients["ACME001"], datetime(2026, 11, 20, 9, 0))


def test_duplicate_end_to_end_id_du04(ref):
    r = TransactionRules(ref, ref.clients["ACME001"], NOW)
    assert codes(r.check(BASE)) == []
    assert codes(r.check(dataclasses.replace(BASE, index=2))) == ["DU04"]


def test_the_epc_placeholder_notprovided_is_never_a_duplicate_end_to_end_id(ref):
    r = TransactionRules(ref, ref.clients["ACME001"], NOW)
    for index in (1, 2, 3):
        assert codes(r.check(dataclasses.replace(BASE, index=index, end_to_end_id="NOTPROVIDED"))) == []
    assert codes(r.check(dataclasses.replace(BASE, index=4))) == []
    assert codes(r.check(dataclasses.replace(BASE, index=5))) == ["DU04"]


def test_several_findings_are_all_reported(ref):
    assert check(ref, creditor_iban="DE00370400440532013000", amount=Decimal("0"), creditor_name="") == [
        "AM01",
        "BE22",
        "AC01",
    ]


@pytest.mark.parametrize(
    "iban",
    [
        "NL91ABNA0417164300",
        "GB29NWBK60161331926819",
        "CH9300762011623852957",
        "BH67BMAG00001299123456",
        "FR1420041010050500013M02606",
        "IE29AIBK93115212345678",
        "BE68539007547034",
        "AT611904300234573201",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "FI2112345600000785",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
        "SE4550000000058398257466",
    ],
)
def test_registry_examples_are_valid_ibans(iban):
    assert iban_problem(iban) is None
    assert iban_rules.iban_valid(iban)


def test_iban_valid_agrees_with_iban_problem():
    """The one-match check must refuse exactly what the step-by-step check words a problem for:
    one valid IBAN per registry country (check digits computed), then every one-character
    change, every length change and other near misses of each."""
    import random
    import re

    rng = random.Random(7)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    samples = []
    for country, (length, bban) in iban_rules.IBAN_REGISTRY.items():
        classes = {"0-9": "0123456789", "A-Z": alphabet[10:], "A-Z0-9": alphabet}
        body = "".join(rng.choice(classes[k]) for k, n in re.findall(r"\[([^]]+)\]\{(\d+)\}", bban.pattern)
                       for _ in range(int(n)))
        assert len(body) == length - 4
        samples.append(country + iban_rules.iban_check_digits(country, body) + body)
    candidates = set()
    for iban in [*samples, "NL91ABNA0417164300", "MT84MALT011000012345MTLCAST001S", "DE89370400440532013000"]:
        candidates.update({iban, iban[:-1], iban + "0", iban + "A", iban.lower(), iban[:2] + "9" + iban[3:],
                           iban[:4] + "\u0663" + iban[5:], iban[:4] + "\uff11" + iban[5:], iban + "\n", " " + iban})
        for at in range(len(iban)):
            for c in [*rng.sample(alphabet, 6), "a", "-", "١"]:  # noqa: RUF001 - a digit that is not ASCII, on purpose
                candidates.add(iban[:at] + c + iban[at + 1:])
    candidates.update({"", "D", "DE", "DE89", "XX89370400440532013000", "de89370400440532013000"})
    valid = 0
    for iban in sorted(candidates):
        assert iban_rules.iban_valid(iban) == (iban_problem(iban) is None), iban
        valid += iban_rules.iban_valid(iban)
    assert valid >= len(samples)  # every sample, and near misses that happen to be valid too


def test_decimal_places_by_value():
    assert [amounts.decimal_places(Decimal(x)) for x in ("100", "100.00", "12.50", "1.005", "1E+2")] == [
        0,
        0,
        1,
        3,
        0,
    ]


def test_parse_amount_separators():
    assert amounts.parse_amount("1.234,56", ",", ".") == Decimal("1234.56")
    assert amounts.parse_amount("1234.56", ",") is None  # dot in a comma layout
    assert amounts.parse_amount(" 7 ") == Decimal("7")
    assert amounts.parse_amount("1e3") is None


# ------------------------------------------------------------------------ file rules
def _pain001_with(old: bytes, new: bytes) -> bytes:
    xml = data_bytes("pain001_09_valid.xml")
    assert old in xml
    return xml.replace(old, new, 1)


FILE_CASES = [
    ("group CtrlSum", b"<CtrlSum>2149.60</CtrlSum>", b"<CtrlSum>2149.61</CtrlSum>", ["AM16"]),
    ("block CtrlSum", b"<CtrlSum>1349.50</CtrlSum>", b"<CtrlSum>1349.00</CtrlSum>", ["AM17"]),
    ("group NbOfTxs", b"<NbOfTxs>3</NbOfTxs>", b"<NbOfTxs>4</NbOfTxs>", ["AM19"]),
    ("block NbOfTxs", b"<NbOfTxs>2</NbOfTxs>", b"<NbOfTxs>3</NbOfTxs>", ["AM20"]),
    ("duplicate PmtInfId", b"ACME-PMT-GBP-01", b"ACME-PMT-EUR-01", ["DU02"]),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_pain001_file_rules(ref, name, old, new, expected):
    v = FileValidation(Pain001Reader(io.BytesIO(_pain001_with(old, new))), ref, "ACME001", NOW)
    result = v.run()
    assert codes(result.file_findings) == expected
    assert result.group_status == "RJCT" and result.rejected == 0


def test_valid_pain001_files_are_accepted(ref):
    assert (
        FileValidation(Pain001Reader(data_stream("pain001_09_valid.xml")), ref, "ACME001", NOW)
        .run()
        .group_status
        == "ACCP"
    )
    assert (
        FileValidation(Pain001Reader(data_stream("pain001_03_valid.xml")), ref, "GLOBEX02", NOW)
        .run()
        .group_status
        == "ACCP"
    )


def test_duplicate_msg_id_du01(ref):
    v = FileValidation(
        Pain001Reader(data_stream("pain001_09_valid.xml")),
        ref,
        "ACME001",
        NOW,
        seen_msg_ids={"ACME-MSG-20261120-01"},
    )
    assert codes(v.run().file_findings) == ["DU01"]


def test_format_not_agreed_ff01(ref):
    v = FileValidation(Pain001Reader(data_stream("pain001_09_valid.xml")), ref, "INITECH03", NOW)
    result = v.run()
    assert codes(result.file_findings) == ["FF01"] and result.total == 0


def test_per_file_limit_am14(ref):
    rows = "\n".join(f"E{i},Anna,DE89370400440532013000,100000.00,EUR,2026-11-23" for i in range(21))
    content = ("EndToEndId,CreditorName,CreditorIBAN,Amount,Currency,ExecutionDate\n" + rows).encode()
    reader = CsvReader(
        io.BytesIO(content),
        CsvLayout(
            "T",
            columns={
                "end_to_end_id": "EndToEndId",
                "creditor_name": "CreditorName",
                "creditor_iban": "CreditorIBAN",
                "amount": "Amount",
                "currency": "Currency",
                "requested_execution_date": "ExecutionDate",
            },
        ),
    )
    # GLOBEX02: per-transaction limit EUR 100,000, per-file limit EUR 2,000,000
    result = FileValidation(
        reader, ref, "GLOBEX02", NOW, file_format=FileFormat.CSV, layout_name="CSV-EU"
    ).run()
    assert codes(result.file_findings) == ["AM14"]
    assert "per-file limit" in result.file_findings[0].description


def test_empty_file_am18(ref):
    reader = CsvReader(io.BytesIO(b"EndToEndId,CreditorName,Amount,Currency\n"), ref.formats["CSV-v1"].csv)
    result = FileValidation(reader, ref, "ACME001", NOW, layout_name="CSV-v1").run()
    assert result.group_status == "RJCT"
    assert codes(result.group_reasons()) == ["AM18"]


def test_reject_file_policy_narr(ref):
    content = data_bytes("csv_v1_valid.csv").replace(b"DE62370400440532013001", b"DE00370400440532013001")
    reader = CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv)
    result = FileValidation(reader, ref, "ACME001", NOW, layout_name="CSV-v1").run()
    assert (result.group_status, result.accepted, result.rejected) == ("RJCT", 5, 1)
    assert codes(result.group_reasons()) == ["NARR"]


def test_unknown_client_is_narr(ref):
    with pytest.raises(FileRejected) as exc:
        FileValidation(Pain001Reader(data_stream("pain001_09_valid.xml")), ref, "NOPE", NOW)
    assert exc.value.code is R.NARR


def test_nacha_controls_none_when_nothing_declared():
    h = FileHeader(FileFormat.PAIN001_09, blocks=[PaymentBlock("P1")])
    assert rules.check_pain001_controls(h) == []


# ------------------------------------------------------------------------ completeness
def test_every_reason_code_is_triggered():
    """Codes expected by the tables above plus the ones asserted in the other test modules."""
    here = {c for case in TX_CASES for c in case[4]} | {c for case in FILE_CASES for c in case[3]}
    here |= {"DU01", "DU04", "AM14", "AM18", "NARR", "FF01"}
    nacha = {"AM10", "AM16", "AM17", "AM19", "AM20", "RC10", "AM01", "AG03", "DU04", "FF01"}  # test_nacha.py
    assert {c.value for c in IsoReason} == here | nacha


def test_seen_ids_find_every_repeat_whatever_the_order_and_keep_look_alikes_apart():
    import random

    from file_pipeline.domain.fast.seen_ids import SeenIds

    rng = random.Random(7)
    ascending = [f"{n:015d}" for n in range(1000, 3000, 3)]  # NACHA trace numbers
    mixed = ascending + ["12", "012", "0012", "12a", "E2E-1", "9" * 17, "9" * 18, "١٢"] + [
        str(rng.randrange(10**15)) for _ in range(500)] + [f"{n:015d}" for n in range(5, 900, 7)]
    seen = SeenIds()
    expected: set[str] = set()
    for value in mixed + rng.sample(mixed, 300):
        assert seen.add(value) is (value not in expected), value
        expected.add(value)
    assert seen.count == len(expected)


def test_seen_ids_take_trace_numbers_a_run_at_a_time_as_one_by_one():
    """``add_new_digits`` stops at the first repeat, whether it repeats a value of the same call,
    of an earlier call or one added by ``add``, in order or not; what it took counts afterwards."""
    import random

    from file_pipeline.domain.fast.seen_ids import SeenIds

    rng = random.Random(11)
    seen, expected = SeenIds(), set()
    for round_ in range(400):
        width = rng.choice([15, 15, 15, 9, 1, 14])
        start = rng.randrange(10**width - 300) if width > 3 else 0
        values = [f"{start + i:0{width}d}" for i in range(rng.randrange(1, 300 if width > 3 else 10))]
        if round_ % 3 == 1:
            values.reverse()
        earlier = sorted(v for v in expected if len(v) == width)
        if round_ % 5 == 2 and earlier:
            values.insert(rng.randrange(len(values) + 1), rng.choice(earlier))
        if round_ % 7 == 3:
            values.insert(rng.randrange(len(values)), values[-1])
        new = next((i for i, v in enumerate(values) if v in expected or v in values[:i]), len(values))
        assert seen.add_new_digits(values) == new
        expected.update(values[:new])
        assert seen.count == len(expected)
        probe = rng.choice(values)
        assert seen.add(probe) is (probe not in expected)
        expected.add(probe)
    assert seen.add_new_digits([]) == 0


def test_seen_ids_take_any_ids_a_run_at_a_time_as_one_by_one():
    """``add_new`` stops at the first repeat like ``add`` one by one would: sequential references
    of many prefixes (digits inside them, regex characters, more prefixes than get a run of
    their own), widths, orders, repeats within a call and of earlier calls, and ids that are
    not prefix-and-digits at all."""
    import random

    from file_pipeline.domain.fast.seen_ids import SeenIds

    rng = random.Random(5)
    prefixes = ["E2E", "", "ACME-", "A1B", "1X", "X0X", "a.b*", "Zoë/", "P"] + [f"Q{i}Q" for i in range(14)]
    seen, expected = SeenIds(), set()
    for round_ in range(300):
        prefix = rng.choice(prefixes)
        width = rng.choice([9, 9, 15, 1, 3, 16])
        start = rng.randrange(max(1, 10**width - 300)) if width > 3 else 0
        values = [f"{prefix}{start + i:0{width}d}" for i in range(rng.randrange(1, 300 if width > 3 else 10))]
        if round_ % 3 == 1:
            values.reverse()
        if round_ % 5 == 2 and expected:
            values.insert(rng.randrange(len(values) + 1), rng.choice(sorted(expected)))
        if round_ % 7 == 3:
            values.insert(rng.randrange(len(values)), values[-1])
        if round_ % 11 == 4:  # another prefix or width in the middle
            values.insert(rng.randrange(len(values) + 1), f"{rng.choice(prefixes)}{rng.randrange(10**6):0{width + 1}d}")
        if round_ % 13 == 5:
            values.insert(rng.randrange(len(values) + 1), rng.choice(["", "E2E", "x", "E2E12a", "٣٣٣"]))
        if round_ % 17 == 6:  # ascending still, but of other widths, then of other prefixes
            values = [f"{prefix}{n:0{w}d}" for n, w in ((10, 6), (11, 4), (12, 3), (13, 2))]
            values += [f"{prefix}{n}" for n in ("A99", "B1", "B2")] if round_ % 2 else []
        new = next((i for i, v in enumerate(values) if v in expected or v in values[:i]), len(values))
        assert seen.add_new(values) == new, round_
        expected.update(values[:new])
        assert seen.count == len(expected)
        probe = rng.choice(values)
        assert seen.add(probe) is (probe not in expected)
        expected.add(probe)
    assert seen.add_new([]) == 0
    for value in sorted(expected, key=lambda v: rng.random())[:2000]:  # every id taken is remembered
        assert not seen.add(value)

    class AtOnce(SeenIds):
        def add(self, value: str) -> bool:
            raise AssertionError(f"{value} was taken one by one")

    at_once = AtOnce()  # the case the method is for: no id is taken one by one
    for prefix in ("ACME-", "", "A1B", "a.b*"):
        assert at_once.add_new([f"{prefix}{i:06d}" for i in range(1, 257)]) == 256
        assert at_once.add_new([f"{prefix}{i:06d}" for i in range(300, 310)]) == 10
