"""``ops dlq``'s pure parts: durations, filters, the table; the CLI's usage errors (exit 2)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ops import cli, dlq
from tests.unit.remediation.audit_contract import T0, record


@pytest.mark.parametrize(("raw", "expected"), [("30s", timedelta(seconds=30)), ("15m", timedelta(minutes=15)),
                                               ("12h", timedelta(hours=12)), ("7d", timedelta(days=7)),
                                               ("2w", timedelta(weeks=2)), ("1.5h", timedelta(minutes=90))])
def test_durations(raw, expected):
    assert dlq.duration(raw) == expected


@pytest.mark.parametrize("raw", ["7", "7x", "d", "-1d", ""])
def test_a_bad_duration_says_how_to_write_one(raw):
    with pytest.raises(dlq.DlqError, match="not a duration"):
        dlq.duration(raw)


def letter(**changes: object) -> dlq.Letter:
    return dlq.Letter(dlq.PARKED, record(**changes), "remediations")


def test_filters_combine_and_compare_entities_case_blind():
    now = T0 + timedelta(days=3)
    old = letter(last_failure_at=T0)
    chosen = dlq.Filter(entity="Deliveries/Subscriptions/Package", reason="MaxDeliveryCountExceeded",
                        correlation_id="d-1", older_than=timedelta(days=2), now=now)
    assert chosen(old) and not chosen.empty()
    assert not dlq.Filter(older_than=timedelta(days=4), now=now)(old)
    assert dlq.Filter(younger_than=timedelta(days=4), now=now)(old)
    assert not dlq.Filter(reason="MalformedMessage", now=now)(old)
    assert not dlq.Filter(correlation_id="d-2", now=now)(old)
    assert dlq.Filter(now=now).empty()


def test_the_table_names_what_an_operator_needs():
    text = dlq.table([letter(last_failure_at=T0)], T0 + timedelta(hours=2))
    header, row = text.splitlines()
    assert header.split()[:8] == ["STATE", "ENTITY", "REASON", "COUNT", "AGE", "CORRELATION", "TYPE", "ID"]
    assert row.split()[:8] == ["parked", "deliveries/subscriptions/package", "MaxDeliveryCountExceeded", "5", "2h",
                               "d-1", "DeliveryRequested", "dl-1"]


@pytest.mark.parametrize(("argv", "words"), [
    (["dlq", "--servicebus", "x", "--storage", "y", "list", "--older-than", "soon"], "not a duration"),
])
def test_a_bad_filter_is_a_usage_error(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and words in capsys.readouterr().err
