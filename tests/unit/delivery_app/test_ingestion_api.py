"""The HTTP contract of Ingestion: validation, sizes, media types, idempotency, status."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from choreography.messaging import Cause
from ingestion import api
from ingestion.messages import DeliveryRequest
from ingestion.service import Accepted, Conflict, Unavailable

from .conftest import World
from .fakes import T0
from .samples import delivery_request, request_body


def parse(body: object, content_type: str | None = "application/json") -> DeliveryRequest | api.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return api.parse_submission(raw, content_type, T0)


def test_a_valid_request_parses():
    parsed = parse(request_body(T0))
    assert isinstance(parsed, DeliveryRequest)
    assert parsed.package_info.size == "small"


def test_every_invalid_field_is_named():
    body = request_body(T0, ownerId="", expedited="yes", package={"size": "huge", "weight": -1})
    del body["pickupLocation"]
    body["deliveryId"] = "bad id/with slash"
    response = parse(body)
    assert isinstance(response, api.Response)
    assert response.status == 400 and response.content_type == "application/problem+json"
    fields = {e["field"] for e in response.body["errors"]}
    assert fields == {"deliveryId", "ownerId", "pickupLocation", "expedited", "packageInfo.size",
                      "packageInfo.weight"}
    for name in fields:
        assert name in response.body["detail"]


def test_numbers_as_strings_and_naive_deadlines_are_invalid():
    body = request_body(T0, deadline="2026-11-22T12:00:00", package={"weight": "3"})
    response = parse(body)
    assert isinstance(response, api.Response)
    assert {e["field"] for e in response.body["errors"]} == {"deadline", "packageInfo.weight"}


def test_a_deadline_in_the_past_is_invalid():
    response = parse(request_body(T0, deadline=(T0 - timedelta(minutes=1)).isoformat()))
    assert isinstance(response, api.Response) and response.status == 400
    assert response.body["errors"] == [{"field": "deadline", "message": "must be in the future"}]


def test_a_body_that_is_not_an_object_is_a_bad_request():
    response = parse([1, 2])
    assert isinstance(response, api.Response) and response.status == 400


@pytest.mark.parametrize(("body", "content_type"), [
    (b"ownerId=1", "application/x-www-form-urlencoded"),
    (b"<delivery/>", "application/xml"),
])
def test_anything_but_json_is_unsupported(body: bytes, content_type: str | None):
    response = parse(body, content_type)
    assert isinstance(response, api.Response) and response.status == 415


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", "not JSON (line 1, column 2)"),
    (b"", "not JSON"),
    (b'{"a": "\xc3\x28"}', "not UTF-8"),
    (b"[" * 32_000 + b"]" * 32_000, "nested too deeply"),
    (b'{"deliveryId": ' + b"9" * 5_000 + b"}", "number too long"),
    (b'{"deliveryId": "\\ud800"}', "lone surrogate"),
])
def test_json_no_reader_can_hold_is_a_400_in_our_own_words(body: bytes, words: str):
    response = parse(body, "application/json")
    assert isinstance(response, api.Response) and response.status == 400
    assert response.content_type == api.PROBLEM_JSON
    detail = response.body["detail"]
    assert words in detail
    for parser_text in ("Expecting", "Exceeds the limit", "recursion", "codec", "Error"):
        assert parser_text not in detail


def test_json_with_a_charset_or_a_json_suffix_is_fine():
    assert isinstance(parse(request_body(T0), "application/json; charset=utf-8"), DeliveryRequest)
    assert isinstance(parse(request_body(T0), "application/vnd.delivery+json"), DeliveryRequest)


def test_over_64_kb_is_too_large():
    body = request_body(T0, notes="x" * (64 * 1024))
    response = parse(body)
    assert isinstance(response, api.Response) and response.status == 413


def test_accepted_points_at_the_status():
    response = api.accepted("https://app.example.net/api/deliveries?code=secret", "d-1")
    assert response.status == 202
    assert response.body == {"deliveryId": "d-1", "statusUrl": "https://app.example.net/api/deliveries/d-1"}
    assert response.headers["Location"] == "https://app.example.net/api/deliveries/d-1"


def test_submit_records_and_publishes_once(world: World):
    request = delivery_request(T0)
    assert world.ingestion.submit(request, Cause("http:1", None)) == Accepted(request.delivery_id)
    timer, sent = world.publisher.sent
    # The join timeout first: it ends the delivery even if the request never goes out.
    assert timer.envelope.message_id == f"JoinTimeout:{request.delivery_id}"
    assert timer.message.scheduled_at == T0 + timedelta(minutes=5)
    assert timer.message.session_id == request.delivery_id and timer.message.destination.name == "delivery-events"
    assert sent.envelope.type == "DeliveryRequested"
    assert sent.envelope.message_id == f"DeliveryRequested:{request.delivery_id}"
    assert sent.message.destination.name == "deliveries"
    assert world.status(request.delivery_id) == "Requested"


@pytest.mark.parametrize("fails", ["bus", "storage"])
def test_an_outage_is_unavailable_and_leaves_no_record_that_would_not_end(world: World, fails: str):
    request = delivery_request(T0)
    if fails == "bus":
        world.publisher.fail_with = ConnectionError("Service Bus unreachable")
    else:
        world.deliveries.add = lambda delivery: _raise(ConnectionError("storage unreachable"))  # type: ignore
    with pytest.raises(Unavailable):
        world.ingestion.submit(request, Cause("http:1", None))
    assert world.delivery.status(request.delivery_id) is None
    assert world.publisher.of_type("DeliveryRequested") == []


def test_a_request_recorded_but_never_published_ends_by_its_join_timeout(world: World):
    request = delivery_request(T0)
    world.publisher.fail_on = "DeliveryRequested"  # the bus goes away right after the record
    with pytest.raises(Unavailable):
        world.ingestion.submit(request, Cause("http:1", None))
    assert world.status(request.delivery_id) == "Requested"
    world.publisher.fail_on = None
    world.bus.run_until_quiet()
    view = world.delivery.status(request.delivery_id)
    assert view is not None and (view["status"], view["reason"]) == ("Cancelled", "JoinTimeout")
    assert world.events.types() == ["DeliveryFailed"]
    stored = world.deliveries.get(request.delivery_id)
    assert stored is not None and stored.outbox == []


def _raise(exc: Exception) -> None:
    raise exc


def test_the_same_request_again_is_accepted_without_a_second_delivery(world: World):
    request = delivery_request(T0)
    world.ingestion.submit(request, Cause("http:1", None))
    world.bus.run()  # outcomes arrive: the delivery is past Requested
    before = len(world.publisher.of_type("DeliveryRequested"))
    assert world.ingestion.submit(request, Cause("http:2", None)) == Accepted(request.delivery_id)
    assert len(world.publisher.of_type("DeliveryRequested")) == before == 1


def test_a_retry_before_anything_happened_republishes_with_the_same_id(world: World):
    request = delivery_request(T0)
    world.ingestion.submit(request, Cause("http:1", None))
    world.ingestion.submit(request, Cause("http:2", None))
    ids = {s.envelope.message_id for s in world.publisher.of_type("DeliveryRequested")}
    assert ids == {f"DeliveryRequested:{request.delivery_id}"}  # duplicate detection drops the copy


def test_the_same_id_with_another_body_is_a_conflict(world: World):
    request = delivery_request(T0)
    world.ingestion.submit(request, Cause("http:1", None))
    other = request.model_copy(update={"owner_id": "someone-else"})
    assert world.ingestion.submit(other, Cause("http:2", None)) == Conflict(request.delivery_id)
    assert len(world.publisher.of_type("DeliveryRequested")) == 1


def test_without_an_id_each_request_is_a_new_delivery(world: World):
    request = delivery_request(T0, deliveryId=None)
    first = world.ingestion.submit(request, Cause("http:1", None))
    second = world.ingestion.submit(request, Cause("http:2", None))
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert first.delivery_id != second.delivery_id


def test_status_of_an_unknown_delivery_is_none(world: World):
    assert world.ingestion.status("nope") is None
    assert api.status(None, "nope").status == 404
