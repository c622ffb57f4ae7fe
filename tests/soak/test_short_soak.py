"""The chaos soak, short: ~100 deliveries and 5 payment files on a durable stack while devhost and
the Service Bus emulator are SIGKILLed and Azurite is paused (``make soak`` runs the long one).
Every invariant is read from the stores; any violation fails the test with its ids."""

from __future__ import annotations

import pytest

from devstack.soak import Options, print_report, run_soak

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_a_short_soak_loses_nothing_and_does_nothing_twice(tmp_path):
    report = run_soak(Options(deliveries=100, files=5, devhost_kills=1, servicebus_kills=1, azurite_pauses=1,
                              data_dir=tmp_path, timeout=420))
    print_report(report)
    assert report.violations == []
    assert report.lost == 0 and report.duplicated == 0
    assert report.ended == report.accepted == 105
    assert len(report.chaos) == 3
