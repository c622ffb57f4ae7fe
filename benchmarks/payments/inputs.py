"""The generated input files: CSV-v1 and NACHA files of N valid transactions, deterministic."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from pathlib import Path

from .common import CLIENTS, CSV, CSV_CENTS, CURRENCIES, ENTRIES_PER_BATCH, EXECUTION_DATE, EXTENSIONS, MB, NACHA_CENTS


def write_csv(path: Path, n: int, seed: int = 1, prefix: str = "BENCH") -> Decimal:
    """A CSV-v1 file of ``n`` valid rows for ACME001 (EUR, its EUR account); the sum of amounts.

    The creditors are those of :mod:`devstack.samples` (IBANs with valid check
    digits at banks in the seeded BIC directory); only the amounts differ (see module doc).
    """
    from devstack.samples import _NAMES, CSV_V1_HEADER, _creditor_ibans

    rng = random.Random(seed)
    pool = _creditor_ibans(rng, 500)
    day = EXECUTION_DATE.isoformat()
    debtor = "DE89370400440532013000"  # ACME001's EUR account
    total_cents = 0
    low, high = CSV_CENTS
    with path.open("wb") as out:
        buf = [CSV_V1_HEADER]
        for i in range(1, n + 1):
            iban, bic = pool[i % len(pool)]
            cents = rng.randint(low, high)
            total_cents += cents
            buf.append(f"{prefix}{i:09d},{debtor},{_NAMES[i % len(_NAMES)]},{iban},,,{bic},"
                       f"{cents // 100}.{cents % 100:02d},EUR,{day},Salary {i} November")
            if len(buf) >= 8192:
                out.write(("\r\n".join(buf) + "\r\n").encode())
                buf.clear()
        if buf:
            out.write(("\r\n".join(buf) + "\r\n").encode())
    return Decimal(total_cents).scaleb(-2)


def _num(value: int, width: int) -> str:
    text = str(value)
    if len(text) > width:
        raise ValueError(f"{value} does not fit in {width} digits")
    return text.rjust(width, "0")


def _alpha(value: str, width: int) -> str:
    return value[:width].ljust(width)


def write_nacha(path: Path, n: int, seed: int = 1) -> Decimal:
    """A PPD credit NACHA file of ``n`` valid entries for INITECH03 (batches of 5000, controls,
    entry hashes and 9-padding right); the total credit. The record layout is that of
    :func:`devstack.samples.generate_nacha`; the creation time differs per ``n``,
    so files of different sizes never share a MsgId (DU01)."""
    from devstack.samples import _NAMES, _ROUTINGS

    rng = random.Random(seed)
    origin = "026009593"  # INITECH03's account's ABA
    odfi = origin[:8]
    eff = EXECUTION_DATE.strftime("%y%m%d")
    creation = f"261120{(n // 1000) % 10000:04d}"  # YYMMDDHHMM, distinct per size
    company_id, company = "1234567890", "INITECH PAYROLL"
    low, high = NACHA_CENTS
    records: list[str] = []
    count = 0
    with path.open("wb") as out:
        def emit(record: str) -> None:
            nonlocal count
            assert len(record) == 94, record
            records.append(record)
            count += 1
            if len(records) >= 8192:
                out.write(("\n".join(records) + "\n").encode("ascii"))
                records.clear()

        emit(f"101 {origin} {origin}{creation}A094101{_alpha('BANK OF AMERICA', 23)}{_alpha(company, 23)}"
             f"{_alpha('', 8)}")
        file_hash = file_credit = file_entries = batches = 0
        seq = 0
        while seq < n:
            batches += 1
            size = min(ENTRIES_PER_BATCH, n - seq)
            emit(f"5220{_alpha(company, 16)}{_alpha('', 20)}{company_id}PPD{_alpha('PAYROLL', 10)}{_alpha('', 6)}"
                 f"{eff}   1{odfi}{_num(batches, 7)}")
            b_hash = b_credit = 0
            for _ in range(size):
                seq += 1
                routing = _ROUTINGS[rng.randrange(len(_ROUTINGS))]
                cents = rng.randint(low, high)
                emit(f"622{routing}{_alpha(str(rng.randrange(10**9, 10**12)), 17)}{_num(cents, 10)}"
                     f"{_alpha(f'EMP{seq:07d}', 15)}{_alpha(_NAMES[seq % len(_NAMES)].upper(), 22)}  0"
                     f"{odfi}{_num(seq, 7)}")
                b_hash += int(routing[:8])
                b_credit += cents
            emit(f"8220{_num(size, 6)}{_num(b_hash % 10**10, 10)}{_num(0, 12)}{_num(b_credit, 12)}{company_id}"
                 f"{_alpha('', 25)}{odfi}{_num(batches, 7)}")
            file_hash += b_hash
            file_credit += b_credit
            file_entries += size
        blocks = -(-(count + 1) // 10)
        emit(f"9{_num(batches, 6)}{_num(blocks, 6)}{_num(file_entries, 8)}{_num(file_hash % 10**10, 10)}"
             f"{_num(0, 12)}{_num(file_credit, 12)}{_alpha('', 39)}")
        while count % 10:
            emit("9" * 94)
        if records:
            out.write(("\n".join(records) + "\n").encode("ascii"))
    return Decimal(file_credit).scaleb(-2)


def check_limits(fmt: str, n: int) -> None:
    """Refuse a size whose file the client's per-file limit would reject (AM14), before writing it."""
    from file_pipeline.domain.reference import ReferenceData

    client = ReferenceData.seed().clients[CLIENTS[fmt]]
    ccy = CURRENCIES[fmt]
    low, high = CSV_CENTS if fmt == CSV else NACHA_CENTS
    worst_mean = Decimal(low + high).scaleb(-2) / 2 * Decimal("1.01")
    limit = client.file_limits.get(ccy)
    if limit is not None and worst_mean * n > limit:
        raise SystemExit(f"{n} {fmt} transactions of {ccy} {Decimal(low).scaleb(-2)}-{Decimal(high).scaleb(-2)} "
                         f"would exceed {CLIENTS[fmt]}'s per-file limit of {ccy} {limit} (the file would be "
                         "rejected with AM14); the reference data does not allow this size")


def make_input(folder: Path, fmt: str, n: int) -> Path:
    path = folder / f"bench-{n}.{EXTENSIONS[fmt]}"
    if not path.exists():
        check_limits(fmt, n)
        started = time.perf_counter()
        total = write_input(path, fmt, n)
        print(f"  generated {path.name}: {path.stat().st_size / MB:.1f} MB, total {CURRENCIES[fmt]} {total}, "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    return path


def write_input(path: Path, fmt: str, n: int, seed: int = 1, prefix: str = "BENCH") -> Decimal:
    return write_csv(path, n, seed, prefix) if fmt == CSV else write_nacha(path, n, seed)
