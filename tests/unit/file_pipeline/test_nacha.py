import io
from datetime import date
from decimal import Decimal

import pytest

from devstack.samples import generate_nacha
from file_pipeline.domain.model import FileFormat, FileRejected
from file_pipeline.domain.reason_codes import NACHA_ERROR_CODES, IsoReason
from file_pipeline.domain.rules import check_nacha_controls
from file_pipeline.domain.validator import FileValidation, codes
from file_pipeline.formats.detect import detect_format
from file_pipeline.formats.nacha import NachaReader

from .conftest import NOW, data_bytes

R = IsoReason


def lines() -> list[str]:
    return data_bytes("nacha_valid.ach").decode("ascii").splitlines()


def join(records: list[str]) -> bytes:
    return ("\n".join(records) + "\n").encode("ascii")


def set_field(record: str, start: int, value: str) -> str:
    """Overwrite 0-based ``start`` with ``value`` keeping the record 94 long."""
    return record[:start] + value + record[start + len(value) :]


def run(content: bytes, ref, client="INITECH03"):
    return FileValidation(NachaReader(io.BytesIO(content)), ref, client, NOW).run()


def test_reads_the_valid_sample(ref):
    reader = NachaReader(io.BytesIO(data_bytes("nacha_valid.ach")))
    txs = list(reader)
    assert [t.creditor_name for t in txs] == [
        "PETER GIBBONS",
        "MICHAEL BOLTON",
        "SAMIR NAGHEENANAJAR",
        "CHOTCHKIES LLC",
    ]
    first = txs[0]
    assert (first.amount, first.currency, first.creditor_routing, first.creditor_account) == (
        Decimal("2500.00"),
        "USD",
        "021000021",
        "123456789",
    )
    assert (
        first.end_to_end_id == "026009590000001" and first.remittance_info == "NOV 2026 SALARY PETER GIBBONS"
    )
    assert first.requested_execution_date == date(2026, 11, 23) and first.kind == "credit"
    assert txs[1].kind == "credit"  # 32 = savings credit
    assert txs[3].requested_execution_date == date(2026, 11, 24)
    h = reader.header
    assert [(b.block_id, b.entry_addenda, b.declared_entry_addenda, b.credit_cents) for b in h.blocks] == [
        ("0000001", 4, 4, 858825),
        ("0000002", 2, 2, 1234599),
    ]
    assert (h.nacha.declared_batch_count, h.nacha.declared_block_count, h.nacha.record_count) == (2, 2, 20)
    assert check_nacha_controls(h) == []
    assert h.msg_id.startswith("0260095932611200830A") or h.msg_id


def test_valid_sample_is_accepted(ref):
    result = run(data_bytes("nacha_valid.ach"), ref)
    assert (result.group_status, result.accepted, result.rejected) == ("ACCP", 4, 0)


def _blocked_by_ten(content: bytes) -> bytes:
    records = content.replace(b"\n", b"")
    return b"\r\n".join(records[i : i + 940] for i in range(0, len(records), 940)) + b"\r\n"


@pytest.mark.parametrize("transform", ["crlf", "no-newlines", "no-final-newline", "no-newlines-but-a-final-one",
                                       "a-line-break-per-block-of-ten"])
def test_line_ending_variants(ref, transform):
    content = data_bytes("nacha_valid.ach")
    content = {
        "crlf": content.replace(b"\n", b"\r\n"),
        "no-newlines": content.replace(b"\n", b""),
        "no-final-newline": content.rstrip(b"\n"),
        "no-newlines-but-a-final-one": content.replace(b"\n", b"") + b"\n",
        "a-line-break-per-block-of-ten": _blocked_by_ten(content),
    }[transform]
    assert detect_format(content, complete=True).format is FileFormat.NACHA
    assert run(content, ref).group_status == "ACCP"


def test_a_short_blocked_stream_is_detected_whatever_its_last_byte():
    """Five records (470 characters) and a line break: found as "a file header record of 470
    characters" before, by a run of files written by others (moov-io/ach)."""
    records = "".join(lines()[:5])
    assert detect_format((records + "\n").encode(), complete=True).format is FileFormat.NACHA
    with pytest.raises(FileRejected, match="471 characters"):
        detect_format((records + "X\n").encode(), complete=True)  # not a whole number of records


# ---------------------------------------------------------------- structural errors: fatal FF01
def _structural_cases():
    L = lines()
    yield "record-length", [*L[:2], L[2][:90], *L[3:]]
    yield "record-type", [*L[:2], "X" + L[2][1:], *L[3:]]
    yield "entry-before-batch", [L[0], L[2], *L[1:2], *L[3:]]
    yield "addenda-without-entry", [*L[:2], L[3], *L[2:3], *L[4:]]
    yield "addenda-not-flagged", [*L[:2], set_field(L[2], 78, "0"), *L[3:]]
    yield "addenda-type-99-return", [*L[:3], set_field(L[3], 1, "99"), *L[4:]]
    yield "addenda-type-98-change", [*L[:3], set_field(L[3], 1, "98"), *L[4:]]
    yield "addenda-type-not-numeric", [*L[:3], set_field(L[3], 1, "0X"), *L[4:]]
    yield "second-file-header", L[:1] + L[:1] + L[1:]
    yield "batch-inside-batch", [*L[:3], L[1], *L[3:]]
    yield "file-control-inside-batch", [*L[:3], L[11], *L[3:]]
    yield "missing-file-control", L[:11]
    yield "truncated", L[:5]
    yield "no-padding", L[:12]
    yield "bad-filler", [*L[:12], "9" * 93 + "8", *L[13:]]
    yield "header-control-mismatch", [*L[:6], set_field(L[6], 87, "0000009"), *L[7:]]
    yield "non-numeric-amount", [*L[:2], set_field(L[2], 29, "00002500AB"), *L[3:]]
    yield "non-numeric-routing", [*L[:2], set_field(L[2], 3, "0210000X"), *L[3:]]
    yield "bad-service-class", [*L[:1], set_field(L[1], 1, "999"), *L[2:]]
    yield "iat-batch", [*L[:1], set_field(L[1], 50, "IAT"), *L[2:]]
    yield "bad-record-size", [set_field(L[0], 34, "095"), *L[1:]]
    yield "no-header", [*L[1:], "9" * 94]


@pytest.mark.parametrize(("name", "records"), list(_structural_cases()), ids=[c[0] for c in _structural_cases()])
def test_structural_errors_reject_the_file_ff01(ref, name, records):
    content = join(records)
    with pytest.raises(FileRejected) as exc:
        list(NachaReader(io.BytesIO(content)))
    assert exc.value.code is R.FF01
    result = run(content, ref)
    assert result.group_status == "RJCT" and codes(result.file_findings) == ["FF01"]


def test_non_ascii_record_is_rejected(ref):
    L = lines()
    content = join(L).replace(b"PETER GIBBONS", "PETER GIBBÖN".encode("latin-1") + b" ")
    with pytest.raises(FileRejected, match="non-ASCII"):
        list(NachaReader(io.BytesIO(content)))


# ---------------------------------------------------------------- control mismatches
def _control_cases():
    L = lines()
    # batch 1 control is L[6], batch 2 control L[10], file control L[11]
    yield "batch entry count", [set_field(L[6], 4, "000005")], ["AM20"]
    yield "batch entry hash", [set_field(L[6], 10, "0021300028")], ["AM10"]
    yield "batch total credit", [set_field(L[6], 32, "000000858826")], ["AM17"]
    yield "batch total debit", [set_field(L[6], 20, "000000000001")], ["AM17"]
    yield "file batch count", [None, set_field(L[11], 1, "000003")], ["AM19"]
    yield "file entry count", [None, set_field(L[11], 13, "00000007")], ["AM19"]
    yield "file entry hash", [None, set_field(L[11], 21, "0023900987")], ["AM10"]
    yield "file total credit", [None, set_field(L[11], 43, "000002093425")], ["AM16"]
    yield "file total debit", [None, set_field(L[11], 31, "000000000100")], ["AM16"]
    yield "file block count", [None, set_field(L[11], 7, "000003")], ["FF01"]


@pytest.mark.parametrize(
    ("name", "changes", "expected"), list(_control_cases()), ids=[c[0] for c in _control_cases()]
)
def test_control_mismatches_map_to_iso_codes(ref, name, changes, expected):
    L = lines()
    if changes[0] is not None:
        L[6] = changes[0]
    if len(changes) > 1:
        L[11] = changes[1]
    result = run(join(L), ref)
    assert result.group_status == "RJCT"
    assert codes(result.file_findings) == expected


def test_mapping_table_covers_every_kind():
    assert set(NACHA_ERROR_CODES.values()) <= set(IsoReason)
    assert NACHA_ERROR_CODES["routing-check-digit"] is R.RC10


# ---------------------------------------------------------------- entry-level rules
def test_entry_level_rules(ref):
    L = lines()
    L[2] = set_field(L[2], 3, "021000022")  # check digit wrong (batch hash fixed below)
    L[4] = set_field(L[4], 3, "121000240")  # valid? no: check digit wrong as well
    L[5] = set_field(L[5], 29, "0000000000")  # zero amount
    # fix batch control: hash unchanged for the first 8 digits, credit total minus the zeroed entry
    L[6] = set_field(L[6], 32, str(858825 - 298775).rjust(12, "0"))
    L[11] = set_field(L[11], 43, str(2093424 - 298775).rjust(12, "0"))
    result = run(join(L), ref)
    assert result.file_findings == []
    rejected = {r.end_to_end_id: codes(r.findings) for r in result.rejections}
    assert rejected == {"026009590000001": ["RC10"], "026009590000002": ["RC10"], "026009590000003": ["AM01"]}
    assert result.group_status == "PART"  # INITECH03 is pass-valid


def test_unknown_routing_and_debits_and_prenotes(ref):
    buf = io.BytesIO()
    generate_nacha(buf, 3, effective_date=date(2026, 11, 23))
    L = buf.getvalue().decode().splitlines()
    # 011000015 has a valid check digit but is not in the seed ABA directory
    old8 = L[2][3:11]
    L[2] = set_field(L[2], 3, "011000015")
    L[3] = set_field(L[3], 1, "27")  # checking debit
    L[4] = set_field(L[4], 1, "23")  # credit prenote
    hash_delta = int("01100001") - int(old8)
    ctl = L[5]
    debit = int(L[3][29:39])
    credit = int(ctl[32:44]) - debit
    new_hash = str(int(ctl[10:20]) + hash_delta).rjust(10, "0")
    L[5] = set_field(
        set_field(set_field(set_field(ctl, 1, "200"), 10, new_hash), 20, str(debit).rjust(12, "0")),
        32,
        str(credit).rjust(12, "0"),
    )
    L[1] = set_field(L[1], 1, "200")
    fc = L[6]
    L[6] = set_field(
        set_field(set_field(fc, 21, new_hash), 31, str(debit).rjust(12, "0")), 43, str(credit).rjust(12, "0")
    )
    result = run(join(L), ref)
    assert result.file_findings == []
    assert [codes(r.findings) for r in result.rejections] == [["RC10"], ["AG03"], ["AG03"]]
    assert result.group_status == "RJCT"  # nothing valid left


def test_duplicate_trace_number_du04(ref):
    """achkit numbers traces per batch, so its two-batch file repeats one: we flag DU04."""
    result = run(data_bytes("nacha_achkit_duplicate_trace.ach"), ref)
    assert [codes(r.findings) for r in result.rejections] == [["DU04"]]


def test_effective_date_rules(ref):
    L = lines()
    L[1] = set_field(L[1], 69, "261126")  # Thanksgiving: Fed holiday
    L[7] = set_field(L[7], 69, "261119")  # yesterday
    result = run(join(L), ref)
    assert sorted({c for r in result.rejections for c in codes(r.findings)}) == ["CH04", "DT03"]
    L[7] = set_field(L[7], 69, "261399")
    result = run(join(L), ref)
    assert "DT01" in {c for r in result.rejections for c in codes(r.findings)}


def test_generated_file_reads_back_with_matching_controls(ref):
    buf = io.BytesIO()
    total = generate_nacha(
        buf, 2345, effective_date=date(2026, 11, 23), entries_per_batch=1000, with_addenda_every=7
    )
    reader = NachaReader(io.BytesIO(buf.getvalue()))
    n = sum(1 for _ in reader)
    assert n == 2345 and len(reader.header.blocks) == 3
    assert sum(b.credit_cents for b in reader.header.blocks) == total
    assert check_nacha_controls(reader.header) == []


# ---------------------------------------------------------------- cross-check with achkit (test-only)
ACHKIT_CATEGORY = {
    "BAD_BATCH_COUNT": "AM20",
    "BAD_ENTRY_HASH": "AM10",
    "BAD_BATCH_DEBIT": "AM17",
    "BAD_BATCH_CREDIT": "AM17",
    "BAD_FILE_BATCH_COUNT": "AM19",
    "BAD_FILE_COUNT": "AM19",
    "BAD_FILE_HASH": "AM10",
    "BAD_FILE_DEBIT": "AM16",
    "BAD_FILE_CREDIT": "AM16",
    "BAD_BLOCK_COUNT": "FF01",
    "BAD_RECORD_LEN": "FF01",
    "BAD_BLOCKING": "FF01",
    "BAD_ROUTING_CHECKSUM": "RC10",
}


def test_results_agree_with_achkit(ref):
    achkit = pytest.importorskip("achkit", reason="achkit (test-only NACHA cross-check) is not installed")
    cases = [("valid", lines())]
    for name, changes, _ in _control_cases():
        L = lines()
        if changes[0] is not None:
            L[6] = changes[0]
        if len(changes) > 1:
            L[11] = changes[1]
        cases.append((name, L))
    L = lines()
    L[2] = set_field(L[2], 3, "021000022")
    cases.append(("routing check digit", L))
    buf = io.BytesIO()
    generate_nacha(buf, 1500, effective_date=date(2026, 11, 23), entries_per_batch=400, with_addenda_every=5)
    cases.append(("generated", buf.getvalue().decode().splitlines()))
    for name, records in cases:
        content = join(records)
        theirs = sorted({ACHKIT_CATEGORY[e["code"]] for e in achkit.validate(content.decode())["errors"]})
        result = run(content, ref)
        ours = sorted(
            set(codes(result.file_findings)) | {c for r in result.rejections for c in codes(r.findings)}
        )
        assert ours == theirs, name


# ---------------------------------------------------------------- the entry screen (fast path)
class _PlainReader:
    """A NACHA reader without ``screened``: every entry goes through the rules one by one."""

    def __init__(self, reader: NachaReader) -> None:
        self._reader = reader
        self.header = reader.header

    def __iter__(self):
        return iter(self._reader)


def _both_ways(content: bytes, ref):
    out = []
    for wrap in (lambda r: r, _PlainReader):
        v = FileValidation(wrap(NachaReader(io.BytesIO(content))), ref, "INITECH03", NOW)
        accepted = [
            (t.index, t.line, t.end_to_end_id, t.amount, t.creditor_name, t.creditor_account, t.creditor_routing,
             t.debtor_account, t.requested_execution_date, t.remittance_info, t.instruction_id, t.kind)
            for t in v.accepted()
        ]
        r = v.result
        rejections = [(x.index, x.line, x.end_to_end_id, codes(x.findings), [f.description for f in x.findings])
                      for x in r.rejections]
        out.append((accepted, rejections, r.file_findings, r.total, r.accepted, r.rejected, r.accepted_sum,
                    r.rejected_sum, r.totals_by_currency, r.header.ctrl_sum, [b.ctrl_sum for b in r.header.blocks]))
    return out


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_screened_entries_get_the_same_verdicts_as_the_rules(ref, line_end):
    """Entries the reader screens as clean are exactly those the rules accept, across chunks."""
    buf = io.BytesIO()
    generate_nacha(buf, 6000, effective_date=date(2026, 11, 23), entries_per_batch=2500, with_addenda_every=7)
    L = buf.getvalue().decode().splitlines()
    entries = [i for i, rec in enumerate(L) if rec[0] == "6"]
    L[entries[10]] = set_field(L[entries[10]], 29, "0000000000")  # AM01
    L[entries[2900]] = set_field(L[entries[2900]], 29, "9999999999")  # above the client's limit
    L[entries[3000]] = set_field(L[entries[3000]], 1, "27")  # debit
    L[entries[3100]] = set_field(L[entries[3100]], 3, "011000015")  # routing not in the directory
    L[entries[3200]] = set_field(L[entries[3200]], 3, "021000022")  # bad check digit
    L[entries[4000]] = set_field(L[entries[4000]], 79, L[entries[3999]][79:94])  # DU04
    L[entries[5000]] = set_field(L[entries[5000]], 60, "\x01")  # control character in the name
    L[entries[5500]] = set_field(L[entries[5500]], 54, " " * 22)  # no creditor name
    # screened entries are handed out in runs, their trace numbers checked a run at a time:
    # repeats at many offsets (97 is prime to any run length), of an earlier batch's trace number
    # (out of order) and of a trace number next to a fault
    for k in range(500, 2400, 97):
        L[entries[k]] = set_field(L[entries[k]], 79, L[entries[k - 1]][79:94])
    L[entries[5200]] = set_field(L[entries[5200]], 79, L[entries[100]][79:94])
    L[entries[3201]] = set_field(L[entries[3201]], 79, L[entries[3200]][79:94])
    L[entries[3300]] = set_field(L[entries[3300]], 1, "23")  # credit prenote
    L[entries[3400]] = set_field(L[entries[3400]], 1, "32")  # savings credit: may be screened
    L[entries[3500]] = set_field(L[entries[3500]], 11, "X")  # check digit not a digit
    L[entries[3600]] = set_field(L[entries[3600]], 12, " " * 17)  # no creditor account
    screened, plain = _both_ways((line_end.join(L) + line_end).encode("ascii"), ref)
    assert screened == plain
    rejected_codes = sorted(c for _, _, _, cs, _ in plain[1] for c in cs)
    assert {"AM01", "AM14", "AG03", "RC10", "DU04", "CH16", "BE22", "AC01"} <= set(rejected_codes)
    assert rejected_codes.count("DU04") == 1 + len(range(500, 2400, 97)) + 2
    assert plain[4] > 5900  # nearly all entries were valid: most went through the screen


def _entries_and_batches(n: int, per_batch: int, addenda_every: int = 0) -> tuple[list[str], list[int], list[int]]:
    buf = io.BytesIO()
    generate_nacha(
        buf, n, effective_date=date(2026, 11, 23), entries_per_batch=per_batch, with_addenda_every=addenda_every
    )
    L = buf.getvalue().decode().splitlines()
    return L, [i for i, rec in enumerate(L) if rec[0] == "6"], [i for i, rec in enumerate(L) if rec[0] == "5"]


def test_screen_agrees_on_batches_whose_date_stops_it(ref):
    """A batch whose effective date has a finding gets no screen, even for routing numbers
    and codes that let entries of an earlier batch through."""
    L, _, batches = _entries_and_batches(2400, 600)
    L[batches[1]] = set_field(L[batches[1]], 69, "261122")  # a Sunday
    L[batches[2]] = set_field(L[batches[2]], 69, "26AB01")  # not a date
    screened, plain = _both_ways(join(L), ref)
    assert screened == plain
    assert {c for _, _, _, cs, _ in plain[1] for c in cs} == {"DT03", "DT01"}
    assert (plain[4], plain[5]) == (1200, 1200)


def test_screen_agrees_across_the_chunks_of_one_long_batch(ref):
    """Chunks without a batch header: each one's text is judged on its own."""
    L, entries, batches = _entries_and_batches(9000, 9000)
    assert len(batches) == 1
    L[entries[4000]] = set_field(L[entries[4000]], 60, "\x1f")  # control character in the name
    L[entries[7000]] = set_field(L[entries[7000]], 60, "\x7f\t")  # allowed in text
    screened, plain = _both_ways(join(L), ref)
    assert screened == plain
    assert [cs for _, _, _, cs, _ in plain[1]] == [["CH16"]] and plain[4] == 8999


def _fatal_cases():
    L, entries, _ = _entries_and_batches(3000, 1500)
    at = entries[700]
    yield "record-type", [*L[:at], "X" + L[at][1:], *L[at + 1:]]
    yield "addenda-not-flagged", [*L[:at + 1], "705" + " " * 80 + "00010000701", *L[at + 1:]]
    yield "non-numeric-amount", [*L[:at], set_field(L[at], 29, "00002500AB"), *L[at + 1:]]
    yield "non-numeric-trace", [*L[:at], set_field(L[at], 90, "00A1"), *L[at + 1:]]
    yield "non-numeric-code", [*L[:at], set_field(L[at], 1, "2X"), *L[at + 1:]]
    yield "record-length", [*L[:at], L[at][:90], *L[at + 1:]]
    yield "lengths-that-make-up", [*L[:at], L[at][:93], L[at + 1] + " ", *L[at + 2:]]
    yield "truncated", L[: at + 1]
    yield "batch-header-inside-batch", [*L[:at + 1], L[1], *L[at + 1:]]


@pytest.mark.parametrize(("name", "records"), list(_fatal_cases()), ids=[c[0] for c in _fatal_cases()])
def test_screen_agrees_when_a_fatal_fault_stops_the_file_mid_batch(ref, name, records):
    """The entries read before the fault are handed out as one by one, screened or not."""
    screened, plain = _both_ways(join(records), ref)
    assert screened == plain
    assert codes(plain[2]) == ["FF01"] and plain[4] > 600


def test_screen_agrees_on_a_non_ascii_byte_mid_batch(ref):
    L, entries, _ = _entries_and_batches(3000, 1500)
    content = join(L)
    cut = content.index(L[entries[2000]].encode("ascii")) + 60
    content = content[:cut] + b"\xe9" + content[cut + 1 :]
    screened, plain = _both_ways(content, ref)
    assert screened == plain
    assert codes(plain[2]) == ["FF01"] and plain[4] > 1900


def test_screen_agrees_on_a_blank_line_and_a_valid_file(ref):
    L = lines()
    assert _both_ways(join(L), ref)[0] == _both_ways(join(L), ref)[1]
    L.insert(5, "")
    screened, plain = _both_ways(join(L), ref)
    assert screened == plain
