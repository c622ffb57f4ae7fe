"""Requested execution dates: cut-offs, business days and holidays, judged at an injected instant."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from file_pipeline.domain.model import Finding
from file_pipeline.domain.reason_codes import IsoReason
from file_pipeline.domain.reference import Client, ReferenceData

R = IsoReason


def earliest_execution_date(ref: ReferenceData, client: Client, currency: str, now: datetime) -> date | None:
    """First date a payment in ``currency`` received at ``now`` can be executed."""
    cutoff = ref.cutoff_for(currency)
    if cutoff is None:
        return None
    local = now.astimezone(cutoff.tz)
    today = local.date()
    cut_time = client.cutoff_time or cutoff.time
    if ref.is_business_day(today, cutoff.calendar) and local.time() < cut_time:
        start = today
    else:
        start = ref.next_business_day(today, cutoff.calendar, include=False)
    return ref.add_business_days(start, cutoff.lead_days, cutoff.calendar)


def check_execution_date(
    requested: date, currency: str, ref: ReferenceData, client: Client, now: datetime
) -> Finding | None:
    """CH04 in the past, CH03 too far ahead, DT03 non-business day, DT05 after cut-off."""
    cutoff = ref.cutoff_for(currency)
    if cutoff is None:
        return None  # unknown currency: reported by the currency rule
    local = now.astimezone(cutoff.tz)
    today = local.date()
    if requested < today:
        return Finding(
            R.CH04, f"requested execution date {requested} is in the past (today is {today} in {cutoff.zone})"
        )
    if requested > today + timedelta(days=cutoff.max_days_ahead):
        return Finding(
            R.CH03, f"requested execution date {requested} is more than {cutoff.max_days_ahead} days ahead"
        )
    if not ref.is_business_day(requested, cutoff.calendar):
        kind = "weekend" if requested.weekday() >= 5 else "holiday"
        return Finding(
            R.DT03, f"requested execution date {requested} is a {kind} in the {cutoff.calendar} calendar"
        )
    earliest = earliest_execution_date(ref, client, currency, now)
    if earliest is not None and requested < earliest:
        cut_time = client.cutoff_time or cutoff.time
        return Finding(
            R.DT05,
            f"requested execution date {requested} is before the earliest possible "
            f"{earliest} ({cutoff.name} cut-off {cut_time:%H:%M} {cutoff.zone}, "
            f"{cutoff.lead_days} lead day(s))",
        )
    return None
