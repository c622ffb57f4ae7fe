"""Synthetic payment files of N transactions, for tests and benchmarks.

Deterministic for a given ``seed``; written straight to a binary stream, so a
million rows cost no memory. Every generated transaction is valid against the
seed reference data (IBAN checksums, directory BICs/ABAs, minor units) unless
``bad_every`` asks for a deliberately broken one every k-th row.
"""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal
from typing import BinaryIO

from file_pipeline.domain.agents import aba_check_digit_ok
from file_pipeline.domain.iban import iban_check_digits

# (country, BBAN prefix (bank/branch code), BBAN body length, BIC)
_CREDITOR_BANKS = (
    ("DE", "37040044", 10, "COBADEFFXXX"),
    ("DE", "50070010", 10, "DEUTDEFFXXX"),
    ("NL", "ABNA", 10, "ABNANL2AXXX"),
    ("NL", "INGB", 10, "INGBNL2AXXX"),
    ("BE", "539", 9, "KREDBEBBXXX"),
    ("AT", "12000", 11, "BKAUATWWXXX"),
    ("FI", "123456", 8, "NDEAFIHHXXX"),
)
_NAMES = (
    "Anna Schmidt",
    "Jan de Vries",
    "Marie Dubois",
    "Lukas Gruber",
    "Sofia Rossi",
    "Mikko Virtanen",
    "Emma Peeters",
    "Noah Janssen",
    "Lea Huber",
    "Olivia Smith",
)
_ROUTINGS = (
    "021000021",
    "026009593",
    "121000248",
    "021000089",
    "071000013",
    "011000138",
    "031176110",
    "061000104",
    "091000019",
    "053000196",
)

CSV_V1_HEADER = (
    "EndToEndId,DebtorIBAN,CreditorName,CreditorIBAN,CreditorAccount,CreditorRouting,CreditorBIC,"
    "Amount,Currency,ExecutionDate,Remittance"
)


def make_iban(country: str, bban: str) -> str:
    return f"{country}{iban_check_digits(country, bban)}{bban}"


def _creditor_ibans(rng: random.Random, count: int) -> list[tuple[str, str]]:
    out = []
    for i in range(count):
        country, prefix, body, bic = _CREDITOR_BANKS[i % len(_CREDITOR_BANKS)]
        digits = "".join(rng.choice("0123456789") for _ in range(body))
        out.append((make_iban(country, prefix + digits), bic))
    return out


def generate_csv(
    out: BinaryIO,
    n: int,
    *,
    execution_date: date,
    seed: int = 1,
    debtor_iban: str = "DE89370400440532013000",
    currency: str = "EUR",
    bad_every: int = 0,
    prefix: str = "E2E",
    max_cents: int = 500_000,
) -> Decimal:
    """Write a CSV-v1 file of ``n`` rows; return the sum of amounts.

    With ``bad_every=k`` every k-th row gets an IBAN with a wrong checksum (AC01); amounts are
    1.00 to ``max_cents``/100 (small ones keep a large file under a client's file limit).
    """
    rng = random.Random(seed)
    pool = _creditor_ibans(rng, 500)
    day = execution_date.isoformat()
    total = Decimal(0)
    buf: list[str] = [CSV_V1_HEADER]
    write = out.write
    for i in range(1, n + 1):
        iban, bic = pool[i % len(pool)]
        if bad_every and i % bad_every == 0:
            iban = iban[:2] + ("00" if iban[2:4] != "00" else "01") + iban[4:]
        cents = rng.randint(100, max_cents)
        amount = f"{cents // 100}.{cents % 100:02d}"
        total += Decimal(amount)
        name = _NAMES[i % len(_NAMES)]
        buf.append(
            f"{prefix}{i:09d},{debtor_iban},{name},{iban},,,{bic},{amount},{currency},{day},"
            f"Salary {i} November"
        )
        if len(buf) >= 4096:
            write(("\r\n".join(buf) + "\r\n").encode("utf-8"))
            buf.clear()
    if buf:
        write(("\r\n".join(buf) + "\r\n").encode("utf-8"))
    return total


def _n(value: int, width: int) -> str:
    s = str(value)
    if len(s) > width:
        raise ValueError(f"{value} does not fit in {width} digits")
    return s.rjust(width, "0")


def _a(value: str, width: int) -> str:
    return value[:width].ljust(width)


def generate_nacha(
    out: BinaryIO,
    n: int,
    *,
    effective_date: date,
    seed: int = 1,
    entries_per_batch: int = 5000,
    origin_routing: str = "026009593",
    company_id: str = "1234567890",
    company_name: str = "INITECH PAYROLL",
    with_addenda_every: int = 0,
    creation: str = "2611201200",
) -> int:
    """Write a PPD credit NACHA file of ``n`` entries; return the total credit in cents."""
    if not aba_check_digit_ok(origin_routing):
        raise ValueError("origin routing number fails the check digit")
    rng = random.Random(seed)
    eff = effective_date.strftime("%y%m%d")
    odfi = origin_routing[:8]
    records: list[str] = []
    write = out.write
    count = 0

    def emit(rec: str) -> None:
        nonlocal count
        assert len(rec) == 94, (len(rec), rec)
        records.append(rec)
        count += 1
        if len(records) >= 4096:
            write(("\n".join(records) + "\n").encode("ascii"))
            records.clear()

    emit(
        "101"
        + " "
        + origin_routing
        + " "
        + origin_routing
        + creation
        + "A094101"
        + _a("BANK OF AMERICA", 23)
        + _a(company_name, 23)
        + _a("", 8)
    )
    file_hash = file_debit = file_credit = file_entries = batches = 0
    remaining, batch_no, seq = n, 0, 0
    while remaining > 0:
        batch_no += 1
        batches += 1
        size = min(entries_per_batch, remaining)
        remaining -= size
        emit(
            "5220"
            + _a(company_name, 16)
            + _a("", 20)
            + _a(company_id, 10)
            + "PPD"
            + _a("PAYROLL", 10)
            + _a("", 6)
            + eff
            + "   "
            + "1"
            + odfi
            + _n(batch_no, 7)
        )
        b_hash = b_credit = b_count = 0
        for _ in range(size):
            seq += 1
            routing = _ROUTINGS[rng.randrange(len(_ROUTINGS))]
            cents = rng.randint(10_000, 900_000)
            addenda = bool(with_addenda_every) and seq % with_addenda_every == 0
            emit(
                "622"
                + routing
                + _a(str(rng.randrange(10**9, 10**12)), 17)
                + _n(cents, 10)
                + _a(f"EMP{seq:06d}", 15)
                + _a(_NAMES[seq % len(_NAMES)].upper(), 22)
                + "  "
                + ("1" if addenda else "0")
                + odfi
                + _n(seq, 7)
            )
            b_hash += int(routing[:8])
            b_credit += cents
            b_count += 1
            if addenda:
                emit("705" + _a(f"PAYROLL PERIOD 2026-11 EMP{seq:06d}", 80) + "0001" + _n(seq, 7))
                b_count += 1
        emit(
            "8220"
            + _n(b_count, 6)
            + _n(b_hash % 10**10, 10)
            + _n(0, 12)
            + _n(b_credit, 12)
            + _a(company_id, 10)
            + _a("", 19)
            + _a("", 6)
            + odfi
            + _n(batch_no, 7)
        )
        file_hash += b_hash
        file_credit += b_credit
        file_entries += b_count
    blocks = -(-(count + 1) // 10)
    emit(
        "9"
        + _n(batches, 6)
        + _n(blocks, 6)
        + _n(file_entries, 8)
        + _n(file_hash % 10**10, 10)
        + _n(file_debit, 12)
        + _n(file_credit, 12)
        + _a("", 39)
    )
    while count % 10:
        emit("9" * 94)
    if records:
        write(("\n".join(records) + "\n").encode("ascii"))
    return file_credit
