"""What every part of the payment benchmark shares: where things are, the two formats' clients,
the amounts and dates the generated files use, and the targets the figures are judged on."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
MB = 1_000_000
CSV, NACHA = "csv", "nacha"
CLIENTS = {CSV: "ACME001", NACHA: "INITECH03"}
CURRENCIES = {CSV: "EUR", NACHA: "USD"}
EXTENSIONS = {CSV: "csv", NACHA: "ach"}
# The Monday after PAYMENT_CLOCK (Friday 2026-11-20 09:00Z): a business day for TARGET and the
# Fed, before every cut-off, within every MaxDaysAhead.
EXECUTION_DATE = date(2026, 11, 23)
# Amount ranges (cents) whose mean keeps a 1M-transaction file under the client's per-file limit.
CSV_CENTS = (100, 1_599)
NACHA_CENTS = (100, 15_999)
ENTRIES_PER_BATCH = 5000

TARGET_CSV_TPS = 50_000
TARGET_PEAK_MB = 200
TARGET_PEAK_AT = 1_000_000
TARGET_ACHKIT_SPEEDUP = 3.0
TARGET_ACHKIT_MEMORY = 0.1


def payment_clock() -> str:
    from devstack.clock import PAYMENT_CLOCK

    return PAYMENT_CLOCK
