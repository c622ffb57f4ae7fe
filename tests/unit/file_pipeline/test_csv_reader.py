import io
from datetime import date
from decimal import Decimal

import pytest

from devstack.samples import generate_csv
from file_pipeline.domain.model import FileRejected
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import CsvLayout
from file_pipeline.domain.validator import FileValidation, codes
from file_pipeline.formats.csv_reader import CsvReader

from .conftest import NOW, data_bytes, data_stream


def test_reads_csv_v1(ref):
    reader = CsvReader(data_stream("csv_v1_valid.csv"), ref.formats["CSV-v1"].csv, file_id="F-1")
    txs = list(reader)
    assert len(txs) == 6
    first = txs[0]
    assert (first.end_to_end_id, first.amount, first.currency) == ("ACME-0001", Decimal("1250.00"), "EUR")
    assert first.creditor_name == "Müller & Söhne GmbH"
    assert first.creditor_iban == "DE62370400440532013001"
    assert first.requested_execution_date == date(2026, 11, 23)
    assert first.remittance_info == "Invoice 2026-118 <urgent>"
    assert (first.index, first.line, first.payment_block_id) == (1, 2, "F-1")
    assert txs[1].creditor_iban == "NL91ABNA0417164300"  # print format normalised
    assert txs[1].debtor_account == ""  # -> client's default account
    assert (txs[3].creditor_account, txs[3].creditor_routing) == ("123456789012", "021000021")
    assert txs[4].remittance_info == "Services, October"  # quoted delimiter
    assert txs[5].requested_execution_date is None and txs[5].date_text == ""
    assert reader.header.nb_of_txs == 6
    assert reader.header.ctrl_sum == sum(t.amount for t in txs)


def test_reads_cp1252_semicolon_decimal_comma_layout(ref):
    txs = list(CsvReader(data_stream("csv_eu_valid.csv"), ref.formats["CSV-EU"].csv))
    assert [t.amount for t in txs] == [
        Decimal("1234.56"),
        Decimal("150000"),
        Decimal("1250.500"),
        Decimal("500.00"),
    ]
    assert txs[0].creditor_name == "Société Générale Client"
    assert txs[3].creditor_name == "Straßenbau Süd AG"
    assert txs[0].requested_execution_date == date(2026, 11, 23)
    assert (txs[1].creditor_account, txs[1].creditor_bic, txs[1].currency) == (
        "1234567",
        "BOTKJPJTXXX",
        "JPY",
    )


def test_layout_without_header_uses_indexes():
    layout = CsvLayout(
        "IDX",
        delimiter="|",
        has_header=False,
        columns={"end_to_end_id": 0, "amount": 1, "currency": 2, "creditor_name": 3, "creditor_iban": 4},
    )
    content = b"E1|10.00|EUR|Anna|DE89370400440532013000\n\nE2|5|EUR|Bob|NL91ABNA0417164300\n"
    txs = list(CsvReader(io.BytesIO(content), layout))
    assert [(t.end_to_end_id, t.line) for t in txs] == [("E1", 1), ("E2", 3)]


def test_utf8_bom_is_skipped(ref):
    content = "\ufeff" + (data_stream("csv_v1_valid.csv").read().decode("utf-8"))
    txs = list(CsvReader(io.BytesIO(content.encode("utf-8")), ref.formats["CSV-v1"].csv))
    assert txs[0].end_to_end_id == "ACME-0001"


def test_short_row_becomes_a_row_finding(ref):
    content = (
        b"EndToEndId,CreditorName,CreditorIBAN,Amount,Currency\n"
        b"E1,Anna,DE89370400440532013000,10.00,EUR\nE2,Bob\n"
    )
    txs = list(CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv))
    assert txs[0].format_findings == ()
    assert [f.code for f in txs[1].format_findings] == [IsoReason.FF01]
    assert txs[1].amount is None


@pytest.mark.parametrize("extra", [1, 5_000])
def test_a_row_longer_than_the_header_becomes_a_row_finding_not_silently_cut(ref, extra):
    content = (
        b"EndToEndId,CreditorName,CreditorIBAN,Amount,Currency\n"
        b"E1,Anna,DE89370400440532013000,10.00,EUR\n"
        b"E2,Bob,DE89370400440532013000,10.00,EUR" + b",x" * extra + b"\n"
        b"E3,Cleo,DE89370400440532013000,10.00,EUR\n"
    )
    txs = list(CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv))
    assert [[f.code for f in tx.format_findings] for tx in txs] == [[], [IsoReason.FF01], []]
    assert f"row has {5 + extra} fields, more than the 5" in txs[1].format_findings[0].description
    screened = [tx for item, _ in CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv).screened(
        lambda ccy, day, text: None) for tx in (item if isinstance(item, list) else [item])]
    assert [[f.code for f in tx.format_findings] for tx in screened] == [[], [IsoReason.FF01], []]


@pytest.mark.parametrize("amount_text", ["12,50", "1e5", "ten", "", "--1", "NaN", "Infinity"])
def test_unparsable_amounts_are_none(ref, amount_text):
    content = f'EndToEndId,CreditorName,Amount,Currency\nE1,Anna,"{amount_text}",EUR\n'.encode()
    (tx,) = CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv)
    assert tx.amount is None and tx.amount_text == amount_text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"Foo,Bar\n1,2\n", "lacks mandatory column"),
        (b"", "no header row"),
        (b'EndToEndId,CreditorName,Amount,Currency\nE1,"Anna,10,EUR\n', "CSV syntax error"),
        (b"EndToEndId,CreditorName,Amount,Currency\nE1,Ann\xe9,10,EUR\n", "not valid utf-8"),
    ],
)
def test_broken_files_are_rejected(ref, content, match):
    with pytest.raises(FileRejected, match=match) as exc:
        list(CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv))
    assert exc.value.code is IsoReason.FF01


# ---------------------------------------------------------------- the entry screen (fast path)
class _PlainReader:
    """A CSV reader without ``screened``: every row goes through the rules one by one."""

    def __init__(self, reader: CsvReader) -> None:
        self._reader = reader
        self.header = reader.header

    def __iter__(self):
        return iter(self._reader)


def _both_ways(content: bytes, ref, client: str = "ACME001", layout: str = "CSV-v1"):
    out = []
    for wrap in (lambda r: r, _PlainReader):
        reader = wrap(CsvReader(io.BytesIO(content), ref.formats[layout].csv, file_id="F-1"))
        v = FileValidation(reader, ref, client, NOW, layout_name=layout)
        accepted = [
            (t.index, t.line, t.end_to_end_id, t.amount, t.currency, t.creditor_name, t.creditor_iban,
             t.creditor_account, t.creditor_routing, t.creditor_bic, t.debtor_account, t.requested_execution_date,
             t.remittance_info, t.instruction_id, t.payment_block_id, t.amount_text, t.date_text, t.kind,
             t.format_findings)
            for t in v.accepted()
        ]
        r = v.result
        rejections = [(x.index, x.line, x.end_to_end_id, x.amount, x.currency, codes(x.findings),
                       [f.description for f in x.findings]) for x in r.rejections]
        # str() too: the sums must be the same Decimals, not only equal values ("6.50" vs "6.5")
        out.append((accepted, rejections, [str(f) for f in r.file_findings], r.total, r.accepted, r.rejected,
                    str(r.accepted_sum), str(r.rejected_sum),
                    sorted((k, str(v)) for k, v in r.totals_by_currency.items()),
                    str(r.header.ctrl_sum), r.header.nb_of_txs))
    return out


# (column, value) faults; columns of CSV-v1: 0 EndToEndId, 1 DebtorIBAN, 2 CreditorName, 3 CreditorIBAN,
# 4 CreditorAccount, 5 CreditorRouting, 6 CreditorBIC, 7 Amount, 8 Currency, 9 ExecutionDate, 10 Remittance
_US = {1: "000123456789", 3: "", 4: "123456789012", 5: "021000021", 6: "", 8: "USD"}
_FAULTS: list[tuple[dict[int, str], str | None]] = [
    ({3: "DE00370400440532013001"}, "AC01"),  # IBAN check digits
    ({3: "XX62370400440532013001"}, "AC01"),  # not an IBAN country
    ({3: "", 4: ""}, "AC01"),  # no creditor account at all
    ({**_US, 4: "1" * 35}, "AC01"),  # account too long
    ({**_US, 4: "12\x0134"}, "AC01"),  # control character in the account
    ({**_US, 5: "", 6: ""}, "RC01"),  # non-IBAN account without an agent
    ({6: "ZZZZDEFFXXX"}, "RC01"),  # BIC not in the directory
    ({6: "COBA"}, "RC01"),  # not a BIC
    ({**_US, 5: "021000022"}, "RC10"),  # ABA check digit
    ({**_US, 5: "011000015"}, "RC10"),  # routing number not in the directory
    ({7: "ten"}, "AM12"),
    ({7: "-5.00"}, "AM12"),
    ({7: "12345678901234.00"}, "AM12"),  # 14 integer digits
    ({7: "0.00"}, "AM01"),
    ({7: "00"}, "AM01"),
    ({7: "250000.01"}, "AM14"),  # the client's per-transaction limit
    ({7: "1000000000.00"}, "AM02"),  # the currency maximum
    ({7: "1.005"}, "CH20"),
    ({8: ""}, "AM11"),
    ({8: "EU"}, "AM11"),
    ({8: "JPY"}, "AM03"),  # not agreed for the client
    ({8: "XXX"}, "AM03"),  # not a supported currency
    ({0: ""}, "FF08"),
    ({0: "E" * 36}, "FF08"),
    ({2: ""}, "BE22"),
    ({2: "N\x07me"}, "CH16"),
    ({2: "N" * 141}, "CH16"),
    ({10: "R" * 141}, "CH16"),
    ({10: "line\x0bbreak"}, "CH16"),
    ({1: "DE02100100100006820101"}, "AC02"),  # not an account of the client
    ({9: "2026-13-01"}, "DT01"),
    ({9: "23.11.2026"}, "DT01"),
    ({9: "2026-11-19"}, "CH04"),
    ({9: "2027-11-23"}, "CH03"),
    ({9: "2026-11-28"}, "DT03"),  # a Saturday
    ({9: "2026-11-20", 8: "GBP", 3: "GB29NWBK60161331926819", 6: ""}, "DT05"),  # SWIFT-FX: one lead day
]
# rows that are valid but unusual: each must get the same verdict both ways
_VALID_VARIANTS: list[dict[int, str]] = [
    {7: "99.5"}, {7: "15000"}, {7: "0015.00"}, {7: "250000.00"}, {7: ".50"}, {7: "7."},
    {1: ""}, {9: ""}, {3: "nl91 abna 0417 1643 00", 6: "abnanl2a"}, {6: ""}, {8: "eur"},
    {2: "Zoë Ćirić-Łukasiewicz"}, {10: "tab\there"}, {10: ""}, {8: "GBP", 3: "GB29NWBK60161331926819", 6: ""},
    {8: "CHF", 3: "CH9300762011623852957", 6: "UBSWCHZH80A", 9: "2026-11-24"}, _US, {**_US, 1: ""},
    {**_US, 6: "CHASUS33XXX"}, {**_US, 5: "", 6: "CHASUS33XXX"}, {0: "ACME 7"}, {0: "12345"}, {0: "00012345"},
]


def _faulty_file(n: int = 6000) -> tuple[bytes, set[str]]:
    import csv as csv_module

    buf = io.BytesIO()
    generate_csv(buf, n, execution_date=date(2026, 11, 23))
    head, *rows = [line.split(",") for line in buf.getvalue().decode().splitlines()]
    expected = set()
    for i, (fault, code) in enumerate(_FAULTS):
        row = rows[97 * i + 13]
        for col, value in fault.items():
            row[col] = value
        expected.add(code)
    for i, variant in enumerate(_VALID_VARIANTS):
        row = rows[89 * i + 41]
        for col, value in variant.items():
            row[col] = value
        row[0] = row[0] if i < len(_VALID_VARIANTS) - 3 else variant[0]
    rows[4000][0] = rows[3999][0]  # DU04, in order
    rows[5000][0] = rows[10][0]  # DU04, out of order
    rows[5100][0] = "E2E000000007"  # DU04 of an id seen long before
    rows[5200] = rows[5200][:5]  # FF01: too few fields
    expected |= {"DU04", "FF01"}
    out = io.StringIO()
    writer = csv_module.writer(out, lineterminator="\r\n")
    writer.writerow(head)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8"), expected


def test_screened_rows_get_the_same_verdicts_as_the_rules(ref):
    """Rows the reader screens as clean are exactly those the rules accept, and the sums match."""
    content, expected = _faulty_file()
    screened, plain = _both_ways(content, ref)
    assert screened == plain
    rejected_codes = {c for _, _, _, _, _, cs, _ in plain[1] for c in cs}
    assert expected <= rejected_codes, expected - rejected_codes
    assert plain[5] == len(_FAULTS) + 4  # every fault above, and nothing else, is rejected


def test_screen_agrees_on_the_sample_files(ref):
    screened, plain = _both_ways(data_bytes("csv_v1_valid.csv"), ref)
    assert screened == plain and plain[4] == 6
    # not screened at all (decimal comma), still the same
    screened, plain = _both_ways(data_bytes("csv_eu_valid.csv"), ref, "GLOBEX02", "CSV-EU")
    assert screened == plain


def _edited(rows_edit, n: int = 1500) -> bytes:
    import csv as csv_module

    buf = io.BytesIO()
    generate_csv(buf, n, execution_date=date(2026, 11, 23))
    head, *rows = [line.split(",") for line in buf.getvalue().decode().splitlines()]
    for i, row in enumerate(rows):
        rows_edit(i, row)
    out = io.StringIO()
    csv_module.writer(out, lineterminator="\r\n").writerows([head, *rows])
    return out.getvalue().encode("utf-8")


def _gbp_or_later(i: int, row: list[str]) -> None:
    """Screens change every few rows (currency, date, both) and some rows are left to the rules."""
    if i % 7 in (2, 3):
        row[8], row[3], row[6] = "GBP", "GB29NWBK60161331926819", ""
    if i % 5 == 4 or 600 <= i < 1200:
        row[9] = "2026-11-24"
    if i % 23 == 11:
        row[7] = "99.5"


def test_screened_runs_are_consecutive_rows_of_one_screen(ref):
    """A run never mixes currencies or dates (the daily limits count a run under its first
    row's), holds at most _RUN rows, and its cents are its amounts; with the rows left to the
    rules the runs give back every row once, in file order."""
    from file_pipeline.domain.rules import TransactionRules
    from file_pipeline.formats.csv_reader import _RUN

    for content in (_edited(_gbp_or_later), _edited(lambda i, row: None, 3 * _RUN + 5)):
        rules = TransactionRules(ref, ref.clients["ACME001"], NOW)
        reader = CsvReader(io.BytesIO(content), ref.formats["CSV-v1"].csv, file_id="F-1")
        indexes, lengths = [], []
        for item, cents in reader.screened(rules.entry_screen):
            if cents is None:
                rules.check(item)  # as the validator would: caches the verdicts on its BIC
                indexes.append(item.index)
                continue
            assert 0 < len(item) <= _RUN
            assert len({(tx.currency, tx.requested_execution_date) for tx in item}) == 1
            assert cents == sum(int(tx.amount * 100) for tx in item)
            indexes.extend(tx.index for tx in item)
            lengths.append(len(item))
        assert indexes == list(range(1, reader.header.nb_of_txs + 1))
        assert max(lengths) > 1
    assert lengths[:2] == [_RUN, _RUN]  # (the first row of each BIC goes to the rules, which cache its verdict)


@pytest.mark.parametrize("fault", [b'E1,"Anna,10,EUR', b"E1,Ann\xe9,10,EUR"])
def test_rows_before_a_fault_that_rejects_the_file_count_as_one_by_one(ref, fault):
    """The run pending when the file turns out broken is handed out before the rejection."""
    content = _edited(_gbp_or_later, 1000)
    cut = content.index(b"\r\n", len(content) // 2) + 2
    screened, plain = _both_ways(content[:cut] + fault + b"\r\n" + content[cut:], ref)
    assert screened == plain
    assert plain[2][0].startswith("FF01") and plain[3] > 400


def test_repeated_ids_anywhere_in_a_run_get_the_same_verdicts(ref):
    """DU04 is asked a run at a time: repeats at the start, middle and end of runs, of ids in
    the same run, in an earlier one, in a row left to the rules, twice in a row, in rows with
    and without a debtor account or date, all get the verdicts of the rules one by one."""
    from file_pipeline.formats.csv_reader import _RUN

    def edit(i: int, row: list[str]) -> None:
        if i % 3 == 0:
            row[1] = ""  # the client's default account
        if 1500 <= i < 1600:
            row[9] = ""  # the default execution date
        if i % 97 == 50:
            row[7] = "99.5"  # left to the rules
        repeats = {0: 5, 1: 1, _RUN - 1: 3, _RUN: _RUN - 1, _RUN + 1: _RUN, 300: 250, 301: 300, 302: 301,
                   500: 147, 777: 2, 1000: 999, 1001: 999, 1550: 1549, 1560: 1200, 1998: 1500, 1999: 1998}
        if i in repeats:
            row[0] = f"E2E{repeats[i] + 1:09d}"  # the id of row repeats[i] (0-based)

    content = _edited(edit, 2000)
    screened, plain = _both_ways(content, ref)
    assert screened == plain
    du04 = [index for index, _, _, _, _, cs, _ in plain[1] if "DU04" in cs]
    assert len(du04) >= 10, du04  # (some repeats above copy an id a row before was given)
