"""The trace context an invocation takes from its trigger: never a reason for it to fail."""

from __future__ import annotations

import json

import pytest
from azure.functions.servicebus import ServiceBusMessage
from opentelemetry.trace import SpanKind

from choreography.triggers import describe, envelope_traceparent

CARRIED = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def received(body: bytes, **properties: str) -> ServiceBusMessage:
    """The trigger value the Python worker hands a Service Bus function."""
    return ServiceBusMessage(body=body, message_id="m-1", application_properties=dict(properties),
                             user_properties={})


@pytest.mark.parametrize("body", [b"[" * 32_000 + b"]" * 32_000, bytes(range(256)), b'{"type": ' + b"9" * 5000 + b"}",
                                  b"[1, 2]", b'{"traceparent": 7}'])
def test_a_body_that_is_no_envelope_falls_back_to_the_property(body: bytes) -> None:
    assert envelope_traceparent(received(body, traceparent=CARRIED)) == CARRIED
    assert envelope_traceparent(received(body)) is None


def test_the_envelope_wins_over_the_property_the_sdk_overwrites() -> None:
    body = json.dumps({"type": "X", "traceparent": CARRIED}).encode()
    described = describe([received(body, traceparent="00-" + "c" * 32 + "-" + "d" * 16 + "-01")])
    assert (described.kind, described.trigger, described.traceparent) == (SpanKind.CONSUMER, "pubsub", CARRIED)
    assert describe([object()]).trigger == "datasource"
