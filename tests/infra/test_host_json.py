"""host.json against the official schema (SchemaStore's ``src/schemas/json/host.json``, draft-07,
Apache-2.0, as of its commit e6fa091; shipped beside this file, unchanged, as host.schema.json),
and the settings that matter on the real host."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from .bicep import ROOT

SCHEMA = Path(__file__).with_name("host.schema.json")
HOST_JSON = ROOT / "host.json"


def _host() -> dict[str, object]:
    return json.loads(HOST_JSON.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_host_json_is_valid_against_the_official_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(_host())]
    assert errors == []


def test_the_schema_rejects_what_the_real_host_misreads() -> None:
    """The check can fail: a sub-second session idle timeout (which the host would accept, then
    close and re-accept each session almost at once) is what this schema turned away."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    host = _host()
    host["extensions"]["serviceBus"]["sessionIdleTimeout"] = "00:00:00.200"  # type: ignore[index]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(host, schema, cls=jsonschema.Draft7Validator)


def test_service_bus_settings_suit_the_real_host() -> None:
    service_bus = _host()["extensions"]["serviceBus"]  # type: ignore[index]
    assert service_bus["sessionIdleTimeout"] >= "00:00:01"
    assert service_bus["maxAutoLockRenewalDuration"] <= _host()["functionTimeout"]  # type: ignore[operator]
