"""Configuration loading and the command line: bad files fail with one clear line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulators.servicebus.config import ConfigError, load_config, parse_config, parse_duration_ms

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_config_declares_the_app_entities() -> None:
    config = load_config(ROOT / "emulators" / "servicebus" / "config.json")
    assert {"package", "drone-scheduler"} <= set(config.topics["deliveries"].subscriptions)
    assert config.queues["delivery-events"].requires_session


@pytest.mark.parametrize(("text", "ms"), [("PT1M", 60_000), ("PT0.5S", 500), ("P14D", 14 * 86_400_000),
                                     ("PT1H30M", 5_400_000), ("00:01:00", 60_000), ("1.00:00:00", 86_400_000)])
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text, "x") == ms


def _doc(queue_props: dict[str, object]) -> dict[str, object]:
    return {"UserConfig": {"Namespaces": [{"Name": "ns", "Queues": [{"Name": "q", "Properties": queue_props}]}]}}


@pytest.mark.parametrize(("props", "fragment"), [
    ({"LockDuration": "one minute"}, "LockDuration"),
    ({"MaxDeliveryCount": 0}, "MaxDeliveryCount"),
    ({"RequiresSession": "yes"}, "RequiresSession"),
    ({"LockDurationX": "PT1M"}, "unknown property LockDurationX"),
    ({"ForwardTo": "nowhere"}, "nowhere"),
])
def test_bad_properties_name_the_problem(props: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_doc(props))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_rule_names_the_rule() -> None:
    doc = {"UserConfig": {"Namespaces": [{"Name": "ns", "Topics": [{"Name": "t", "Subscriptions": [
        {"Name": "s", "Rules": [{"Name": "broken", "Properties": {"FilterType": "Sql",
                                                                  "SqlFilter": {"SqlExpression": "a = = 1"}}}]}]}]}]}}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert "Rules[0]" in str(info.value)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"UserConfig": {}}), json.dumps(_doc({"Bogus": 1}))])
def test_cli_exits_2_with_one_line_for_a_malformed_config(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    result = subprocess.run([sys.executable, "-m", "emulators.servicebus", "--config", str(path), "--in-memory",
                             "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "invalid configuration" in lines[0]


def test_cli_missing_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "emulators.servicebus", "--config", str(tmp_path / "none.json"),
                             "--in-memory"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot read" in result.stderr
