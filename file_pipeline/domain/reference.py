"""Frozen, in-memory reference data built from Azure-Table-shaped rows.

One table holds every record type; ``PartitionKey`` is the record type and
``RowKey`` the code (Table keys may not contain ``/ \\ # ?``, so the pair
``CCY`` + ``EUR`` stands for what people write as ``CCY/EUR``):

==============  ===============  ==============================================================
PartitionKey    RowKey           properties
==============  ===============  ==============================================================
CCY             EUR              Name, MinorUnits (int), Enabled (bool), MaxAmount (str decimal),
                                 Cutoff (id of a CUTOFF row)
BIC             COBADEFFXXX      BankName, Country, Reachable (bool)
ABA             021000021        BankName, Reachable (bool)
CUTOFF          SEPA-SCT         Time "HH:MM", TimeZone (IANA), LeadDays (int, business days),
                                 Calendar (XECB | XFED | WEEKEND), MaxDaysAhead (int)
HOLIDAY-XECB    2026-12-25       Name   (one partition per calendar)
CLIENT          ACME001          Name, Accounts (JSON list), AllowedCurrencies ("EUR,USD"),
                                 AllowedFormats ("CSV-v1,PAIN001,NACHA"), TxLimits / FileLimits /
                                 DailyLimits (JSON {"EUR": "250000.00"}), RejectionPolicy
                                 (reject-file | pass-valid), CutoffTime (optional "HH:MM")
FORMAT          CSV-v1           Kind (csv | pain001 | nacha); for csv: Delimiter,
                                 DecimalSeparator, ThousandsSeparator, Encoding, HasHeader (bool),
                                 DateFormat (strptime), Columns (JSON {field: header or index})
==============  ===============  ==============================================================

Table properties are scalars, so lists and maps are stored as JSON strings (or
comma-separated lists) and parsed here. Seed data ships in
``file_pipeline/reference_data/*.json`` as lists of such entities.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal
from importlib import resources
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

REJECT_FILE = "reject-file"
PASS_VALID = "pass-valid"
POLICIES = (REJECT_FILE, PASS_VALID)

#: fields a CSV layout can map; the first four are mandatory in every layout
CSV_FIELDS = (
    "end_to_end_id",
    "amount",
    "currency",
    "creditor_name",
    "creditor_iban",
    "creditor_account",
    "creditor_routing",
    "creditor_bic",
    "debtor_account",
    "requested_execution_date",
    "remittance_info",
    "instruction_id",
)
_MANDATORY_CSV_FIELDS = CSV_FIELDS[:4]

_BAD_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


class ReferenceDataError(ValueError):
    """A reference row is malformed."""


def check_table_key(key: object) -> str:
    """Validate an Azure Table PartitionKey/RowKey (no ``/ \\ # ?``, no control chars, <= 1 KiB)."""
    if not isinstance(key, str) or not key:
        raise ReferenceDataError(f"table key must be a non-empty string, got {key!r}")
    if _BAD_KEY.search(key):
        raise ReferenceDataError(f"table key {key!r} contains a character Azure Tables forbid")
    if len(key.encode("utf-8")) > 1024:
        raise ReferenceDataError(f"table key {key[:20]!r}... longer than 1 KiB")
    return key


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    name: str
    minor_units: int
    enabled: bool
    max_amount: Decimal | None
    cutoff: str


@dataclass(frozen=True, slots=True)
class Bank:
    bic: str
    name: str
    country: str
    reachable: bool


@dataclass(frozen=True, slots=True)
class AbaBank:
    routing: str
    name: str
    reachable: bool


@dataclass(frozen=True, slots=True)
class Cutoff:
    name: str
    time: time
    zone: str
    lead_days: int
    calendar: str
    max_days_ahead: int

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)


@dataclass(frozen=True, slots=True)
class DebtorAccount:
    """An account of the client at our bank, used as ``DbtrAcct`` in pain.001."""

    id: str  # IBAN, or a domestic account number
    currency: str
    bic: str = ""  # debtor agent BIC (our bank)
    aba: str = ""  # debtor agent ABA routing, for US accounts

    @property
    def is_iban(self) -> bool:
        return not self.aba and len(self.id) > 4 and self.id[:2].isalpha() and self.id[2:4].isdigit()


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    accounts: tuple[DebtorAccount, ...]
    allowed_currencies: frozenset[str]
    allowed_formats: frozenset[str]
    tx_limits: Mapping[str, Decimal]
    file_limits: Mapping[str, Decimal]
    daily_limits: Mapping[str, Decimal]
    rejection_policy: str
    cutoff_time: time | None = None

    def account(self, account_id: str) -> DebtorAccount | None:
        for acc in self.accounts:
            if acc.id == account_id:
                return acc
        return None

    def default_account(self, currency: str) -> DebtorAccount | None:
        for acc in self.accounts:
            if acc.currency == currency:
                return acc
        return self.accounts[0] if self.accounts else None


@dataclass(frozen=True, slots=True)
class CsvLayout:
    name: str
    delimiter: str = ","
    decimal_separator: str = "."
    thousands_separator: str = ""
    encoding: str = "utf-8"
    has_header: bool = True
    date_format: str = "%Y-%m-%d"
    columns: Mapping[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FormatSpec:
    name: str
    kind: str  # csv | pain001 | nacha
    csv: CsvLayout | None = None


def _split_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _json(value: Any, what: str) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, (list, dict)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError) as exc:
        raise ReferenceDataError(f"{what}: not valid JSON: {exc}") from None


def _decimal_map(value: Any, what: str) -> Mapping[str, Decimal]:
    raw = _json(value, what) or {}
    if not isinstance(raw, dict):
        raise ReferenceDataError(f"{what}: expected a JSON object of currency -> amount")
    return MappingProxyType({str(k).upper(): Decimal(str(v)) for k, v in raw.items()})


def _hhmm(value: str, what: str) -> time:
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise ReferenceDataError(f"{what}: time must be HH:MM, got {value!r}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y")
    return bool(value)


@dataclass(frozen=True)
class ReferenceData:
    currencies: Mapping[str, Currency]
    banks: Mapping[str, Bank]
    aba: Mapping[str, AbaBank]
    cutoffs: Mapping[str, Cutoff]
    holidays: Mapping[str, frozenset[date]]
    clients: Mapping[str, Client]
    formats: Mapping[str, FormatSpec]

    # ------------------------------------------------------------------ build
    @classmethod
    def from_entities(cls, rows: Iterable[Mapping[str, Any]]) -> "ReferenceData":
        """Build from Azure Table entities (dicts with PartitionKey/RowKey + properties)."""
        currencies: dict[str, Currency] = {}
        banks: dict[str, Bank] = {}
        aba: dict[str, AbaBank] = {}
        cutoffs: dict[str, Cutoff] = {}
        holidays: dict[str, set[date]] = {}
        clients: dict[str, Client] = {}
        formats: dict[str, FormatSpec] = {}
        for row in rows:
            pk = check_table_key(row.get("PartitionKey"))
            rk = check_table_key(row.get("RowKey"))
            what = f"{pk}/{rk}"
            try:
                if pk == "CCY":
                    max_amount = row.get("MaxAmount")
                    currencies[rk] = Currency(
                        code=rk,
                        name=row.get("Name", rk),
                        minor_units=int(row["MinorUnits"]),
                        enabled=_bool(row.get("Enabled", True)),
                        max_amount=Decimal(str(max_amount)) if max_amount not in (None, "") else None,
                        cutoff=row.get("Cutoff", ""),
                    )
                elif pk == "BIC":
                    banks[rk] = Bank(
                        rk,
                        row.get("BankName", ""),
                        row.get("Country", rk[4:6]),
                        _bool(row.get("Reachable", True)),
                    )
                elif pk == "ABA":
                    aba[rk] = AbaBank(rk, row.get("BankName", ""), _bool(row.get("Reachable", True)))
                elif pk == "CUTOFF":
                    cutoffs[rk] = Cutoff(
                        name=rk,
                        time=_hhmm(row["Time"], what),
                        zone=row["TimeZone"],
                        lead_days=int(row.get("LeadDays", 0)),
                        calendar=row.get("Calendar", "WEEKEND"),
                        max_days_ahead=int(row.get("MaxDaysAhead", 365)),
                    )
                    ZoneInfo(row["TimeZone"])  # fail at load time on an unknown zone
                elif pk.startswith("HOLIDAY-"):
                    holidays.setdefault(pk[len("HOLIDAY-") :], set()).add(date.fromisoformat(rk))
                elif pk == "CLIENT":
                    clients[rk] = _client(rk, row, what)
                elif pk == "FORMAT":
                    formats[rk] = _format(rk, row, what)
                else:
                    raise ReferenceDataError(f"unknown record type {pk!r}")
            except ReferenceDataError as exc:
                raise ReferenceDataError(f"{what}: {exc}") from None
            except (LookupError, ValueError, TypeError, ArithmeticError) as exc:
                raise ReferenceDataError(f"{what}: {type(exc).__name__}: {exc}") from None
        for c in currencies.values():
            if c.cutoff and c.cutoff not in cutoffs:
                raise ReferenceDataError(f"CCY/{c.code}: unknown cut-off {c.cutoff!r}")
        return cls(
            currencies=MappingProxyType(currencies),
            banks=MappingProxyType(banks),
            aba=MappingProxyType(aba),
            cutoffs=MappingProxyType(cutoffs),
            holidays=MappingProxyType({k: frozenset(v) for k, v in holidays.items()}),
            clients=MappingProxyType(clients),
            formats=MappingProxyType(formats),
        )

    @classmethod
    def seed(cls) -> "ReferenceData":
        """The reference data shipped in ``file_pipeline/reference_data``."""
        return cls.from_entities(load_seed_entities())

    # ------------------------------------------------------------------ lookups
    def bank(self, bic: str) -> Bank | None:
        """Directory lookup; an 8-char BIC means the head office (``XXX`` branch)."""
        return self.banks.get(bic + "XXX" if len(bic) == 8 else bic)

    def is_business_day(self, day: date, calendar: str) -> bool:
        return day.weekday() < 5 and day not in self.holidays.get(calendar, frozenset())

    def next_business_day(self, day: date, calendar: str, include: bool = True) -> date:
        if not include:
            day += timedelta(days=1)
        while not self.is_business_day(day, calendar):
            day += timedelta(days=1)
        return day

    def add_business_days(self, day: date, n: int, calendar: str) -> date:
        day = self.next_business_day(day, calendar)
        for _ in range(n):
            day = self.next_business_day(day, calendar, include=False)
        return day

    def cutoff_for(self, currency: str) -> Cutoff | None:
        ccy = self.currencies.get(currency)
        return self.cutoffs.get(ccy.cutoff) if ccy and ccy.cutoff else None

    def csv_layout_for(self, client: Client) -> CsvLayout | None:
        for name in sorted(client.allowed_formats):
            spec = self.formats.get(name)
            if spec is not None and spec.csv is not None:
                return spec.csv
        return None


def _client(rk: str, row: Mapping[str, Any], what: str) -> Client:
    accounts_raw = _json(row.get("Accounts"), f"{what} Accounts") or []
    accounts = tuple(
        DebtorAccount(
            id=str(a["id"]), currency=str(a["currency"]).upper(), bic=a.get("bic", ""), aba=a.get("aba", "")
        )
        for a in accounts_raw
    )
    policy = row.get("RejectionPolicy", REJECT_FILE)
    if policy not in POLICIES:
        raise ReferenceDataError(f"RejectionPolicy must be one of {POLICIES}, got {policy!r}")
    cutoff = row.get("CutoffTime")
    return Client(
        client_id=rk,
        name=row.get("Name", rk),
        accounts=accounts,
        allowed_currencies=frozenset(c.upper() for c in _split_list(row.get("AllowedCurrencies"))),
        allowed_formats=frozenset(_split_list(row.get("AllowedFormats"))),
        tx_limits=_decimal_map(row.get("TxLimits"), f"{what} TxLimits"),
        file_limits=_decimal_map(row.get("FileLimits"), f"{what} FileLimits"),
        daily_limits=_decimal_map(row.get("DailyLimits"), f"{what} DailyLimits"),
        rejection_policy=policy,
        cutoff_time=_hhmm(cutoff, what) if cutoff else None,
    )


def _format(rk: str, row: Mapping[str, Any], what: str) -> FormatSpec:
    kind = row.get("Kind", "")
    if kind not in ("csv", "pain001", "nacha"):
        raise ReferenceDataError(f"Kind must be csv, pain001 or nacha, got {kind!r}")
    if kind != "csv":
        return FormatSpec(rk, kind)
    columns = _json(row.get("Columns"), f"{what} Columns") or {}
    if not isinstance(columns, dict):
        raise ReferenceDataError("Columns must be a JSON object field -> header name or index")
    unknown = set(columns) - set(CSV_FIELDS)
    if unknown:
        raise ReferenceDataError(f"Columns: unknown fields {sorted(unknown)}")
    missing = [f for f in _MANDATORY_CSV_FIELDS if f not in columns]
    if missing:
        raise ReferenceDataError(f"Columns: mandatory fields missing {missing}")
    has_header = _bool(row.get("HasHeader", True))
    if not has_header and not all(isinstance(v, int) for v in columns.values()):
        raise ReferenceDataError("Columns must be indexes when HasHeader is false")
    delimiter = row.get("Delimiter", ",")
    decimal_sep = row.get("DecimalSeparator", ".")
    if len(delimiter) != 1 or decimal_sep not in (".", ","):
        raise ReferenceDataError("Delimiter must be 1 char, DecimalSeparator '.' or ','")
    encoding = row.get("Encoding", "utf-8")
    "".encode(encoding)  # LookupError on an unknown codec
    return FormatSpec(
        rk,
        kind,
        CsvLayout(
            name=rk,
            delimiter=delimiter,
            decimal_separator=decimal_sep,
            thousands_separator=row.get("ThousandsSeparator", ""),
            encoding=encoding,
            has_header=has_header,
            date_format=row.get("DateFormat", "%Y-%m-%d"),
            columns=MappingProxyType(dict(columns)),
        ),
    )


def load_seed_entities() -> list[dict[str, Any]]:
    """All rows of the shipped seed files, in file-name order (ready for Table upserts)."""
    rows: list[dict[str, Any]] = []
    folder = resources.files("file_pipeline") / "reference_data"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise ReferenceDataError(f"{entry.name}: expected a JSON list of entities")
            rows.extend(data)
    return rows
