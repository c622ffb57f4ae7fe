import io
from datetime import date

from devstack.samples import generate_csv, generate_nacha, make_iban
from file_pipeline.domain.model import Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.validator import FileValidation, Rejection, RejectionLog
from file_pipeline.formats.csv_reader import CsvReader
from file_pipeline.formats.nacha import NachaReader

from .conftest import NOW


def test_generators_are_deterministic():
    a, b = io.BytesIO(), io.BytesIO()
    generate_csv(a, 300, execution_date=date(2026, 11, 23), seed=7)
    generate_csv(b, 300, execution_date=date(2026, 11, 23), seed=7)
    assert a.getvalue() == b.getvalue()
    c, d = io.BytesIO(), io.BytesIO()
    generate_nacha(c, 300, effective_date=date(2026, 11, 23), seed=7)
    generate_nacha(d, 300, effective_date=date(2026, 11, 23), seed=7)
    assert c.getvalue() == d.getvalue()


def test_generated_csv_sum_and_bad_rows(ref):
    buf = io.BytesIO()
    total = generate_csv(buf, 1000, execution_date=date(2026, 11, 23), bad_every=100)
    reader = CsvReader(io.BytesIO(buf.getvalue()), ref.formats["CSV-v1"].csv)
    txs = list(reader)
    assert len(txs) == 1000 and reader.header.ctrl_sum == total


def test_generated_nacha_is_blocked_and_padded():
    buf = io.BytesIO()
    generate_nacha(buf, 777, effective_date=date(2026, 11, 23), entries_per_batch=100, with_addenda_every=10)
    records = buf.getvalue().decode().splitlines()
    assert len(records) % 10 == 0 and all(len(r) == 94 for r in records)
    reader = NachaReader(io.BytesIO(buf.getvalue()))
    assert sum(1 for _ in reader) == 777
    assert reader.header.nacha.declared_block_count == len(records) // 10


def test_make_iban_produces_valid_check_digits():
    from file_pipeline.domain.iban import iban_problem

    assert make_iban("DE", "370400440532013000") == "DE89370400440532013000"
    assert iban_problem(make_iban("GB", "NWBK60161331926819")) is None


def test_rejection_log_spills_to_disk_and_rereads(tmp_path):
    log = RejectionLog(spool_dir=str(tmp_path))
    finding = (Finding(IsoReason.AC01, "creditor IBAN 'DE00…' is wrong — «quoted»"),)
    for i in range(12000):
        log.append(Rejection(i, i + 1, f"E{i}", "", "B", "1.00", "EUR", finding))
    assert len(log) == 12000
    assert log._file._rolled  # more than 1 MiB: on disk, not in memory
    first = next(iter(log))
    assert first == Rejection(0, 1, "E0", "", "B", "1.00", "EUR", finding)
    assert sum(1 for _ in log) == 12000  # re-iterable
    log.close()


def test_validation_runs_once(ref):
    v = FileValidation(
        CsvReader(io.BytesIO(b"EndToEndId,CreditorName,Amount,Currency\n"), ref.formats["CSV-v1"].csv),
        ref,
        "ACME001",
        NOW,
        layout_name="CSV-v1",
    )
    v.run()
    try:
        v.run()
    except RuntimeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("second run must fail")
