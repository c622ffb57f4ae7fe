"""Hostile HTTP: bodies no parser can hold, wrong types and shapes, ids that can never be keys,
odd media types. Every answer is a 4xx problem in our own words (or a 202 for a request that is
odd but valid), never a 5xx; the stack keeps serving."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import App, assert_clean_refusal, call, delivery, still_serving


def _raw_cases() -> list[tuple[str, bytes]]:
    cases = [
        ("empty", b""), ("brace", b"{"), ("close", b"}"), ("bracket", b"["), ("nul", b"\x00"),
        ("single quotes", b"{'deliveryId': 'x'}"), ("trailing comma", b'{"a": 1,}'), ("bare word", b"delivery"),
        ("number", b"42"), ("string", b'"x"'), ("null", b"null"), ("true", b"true"), ("array", b"[]"),
        ("array of objects", b"[{}]"), ("comment", b'{/* x */"a": 1}'), ("unterminated string", b'{"a": "x'),
        ("control char in string", b'{"ownerId": "a\x01b"}'), ("bad escape", b'{"a": "\\q"}'),
        ("invalid utf-8", b'{"ownerId": "\xc3\x28"}'), ("latin-1", '{"ownerId": "Müller"}'.encode("latin-1")),
        ("utf-16", '{"ownerId": "x"}'.encode("utf-16")), ("bom then garbage", b"\xef\xbb\xbf{"),
        ("lone surrogate", b'{"ownerId": "\\ud800"}'), ("lone low surrogate", b'{"ownerId": "\\udfff"}'),
        ("NaN", b'{"packageInfo": {"weight": NaN}}'), ("Infinity", b'{"packageInfo": {"weight": Infinity}}'),
        ("huge exponent", b'{"packageInfo": {"weight": 1e999}}'),
        ("huge int", b'{"packageInfo": {"weight": ' + b"9" * 5000 + b"}}"),
        ("huge negative int", b'{"x": -' + b"1" * 4400 + b"}"),
    ]
    for depth in (100, 1000, 5000, 32_000, 100_000):
        cases.append((f"{depth} nested arrays", b"[" * depth + b"]" * depth))
        cases.append((f"{depth} nested objects", b'{"a":' * depth + b"1" + b"}" * depth))
    cases.append(("unclosed deep nesting", b"[" * 50_000))
    return cases


@pytest.mark.parametrize(("name", "raw"), _raw_cases(), ids=[c[0] for c in _raw_cases()])
def test_bodies_no_reader_can_hold_are_400(app: App, name: str, raw: bytes) -> None:
    code, body, headers = call("POST", f"{app.api}/deliveries", raw=raw)
    assert_clean_refusal(code, body, headers, (400, 413))  # 413: over 64 KB before it is even read


def _field_cases() -> list[tuple[str, str, Any]]:
    hostile_ids = ["", "a/b", "a\\b", "a#b", "a?b", "\x00", "\x1f", "\x7f", "x" * 65, "x" * 2048, ".", "-lead",
                   " spaced", "ü", "🚁", "\u202eevil", "a\u200bb", "../../etc", "%2F", "<script>", "' OR 1=1"]
    cases: list[tuple[str, str, Any]] = [("deliveryId", f"id {i}", v) for i, v in enumerate(hostile_ids)]
    cases += [("deliveryId", f"type {type(v).__name__} {i}", v) for i, v in enumerate([1, 1.5, [], {}, True])]
    for name in ("ownerId", "pickupLocation", "dropoffLocation"):
        cases += [(name, "missing", ...), (name, "null", None), (name, "number", 7), (name, "object", {"a": 1}),
                  (name, "huge", "x" * 70_000), (name, "empty", "")]
    cases += [("deadline", v, v) for v in ["yesterday", "2020-01-01T00:00:00Z", "2026-13-40T99:99:99Z",
                                            "2099-01-01T00:00:00", "", "0", "9999-12-31T23:59:59+99:00"]]
    cases += [("deadline", "number", 1_700_000_000), ("deadline", "null", None)]
    cases += [("packageInfo", "missing", ...), ("packageInfo", "string", "small"), ("packageInfo", "array", [])]
    cases += [("packageInfo.size", v, v) for v in ["huge", "", "SMALL ", "\x00", None, 3]]
    cases += [("packageInfo.weight", repr(v), v) for v in [-1, 0, "5", None, [], 1e308, -0.0, True, 10**30]]
    cases += [("expedited", repr(v), v) for v in ["yes", 1, None, []]]
    return cases


@pytest.mark.parametrize(("field", "label", "value"), _field_cases(),
                         ids=[f"{c[0]}-{c[1]}"[:60] for c in _field_cases()])
def test_wrong_fields_are_a_400_naming_them_or_a_valid_request(app: App, field: str, label: str, value: Any) -> None:
    body: dict[str, Any] = delivery()
    target, _, leaf = field.rpartition(".")
    holder = body[target] if target else body
    if value is ...:
        holder.pop(leaf, None)
    else:
        holder[leaf] = value
    code, answer, headers = call("POST", f"{app.api}/deliveries", raw=json.dumps(body).encode())
    assert_clean_refusal(code, answer, headers)
    assert code in (202, 400, 413), (code, answer)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded", "image/png", "application/jsonx"])
def test_bodies_that_are_not_json_by_their_media_type_are_415(app: App, content_type: str) -> None:
    code, body, headers = call("POST", f"{app.api}/deliveries", raw=json.dumps(delivery()).encode(),
                               headers={"Content-Type": content_type})
    assert_clean_refusal(code, body, headers, (415,))


def test_a_body_over_64_kb_is_413(app: App) -> None:
    code, body, headers = call("POST", f"{app.api}/deliveries", raw=b'{"a": "' + b"x" * 70_000 + b'"}')
    assert_clean_refusal(code, body, headers, (413,))


HOSTILE_PATH_IDS = ["%00", "..%2F..%2Fadmin", "a%23b", "a%3Fb", "x" * 2000, "%ff%fe", "%ED%A0%80", "a%5Cb",
                    "%0d%0aSet-Cookie:x", "%E2%80%AE", "🚁", "%20", "a.b", "-", "CON", "%2e%2e"]


def _refused(code: int, body: Any, headers: dict[str, str]) -> None:
    """The app's problem, or the host's own 404 for a path no route matches (empty, as Azure's)."""
    if headers.get("Content-Type", "").startswith("application/problem+json"):
        assert_clean_refusal(code, body, headers, (400, 404))
    else:
        assert code == 404 and body in (None, "", "404: Not Found"), (code, headers, body)


@pytest.mark.parametrize("hostile", HOSTILE_PATH_IDS)
def test_hostile_delivery_ids_in_the_path_are_404(app: App, hostile: str) -> None:
    _refused(*call("GET", f"{app.api}/deliveries/{quote(hostile, safe='%')}"))


@pytest.mark.parametrize("hostile", HOSTILE_PATH_IDS)
def test_hostile_payment_file_paths_are_refused(app: App, hostile: str) -> None:
    hostile = quote(hostile, safe="%")
    for path in (f"{hostile}/file.csv", f"ACME001/{hostile}"):
        code, body, headers = call("GET", f"{app.api}/payment-files/{path}")
        assert 400 <= code < 500, (path, code, body)
        _refused(code, body, headers)


def test_duplicate_keys_take_one_value_and_the_request_stays_whole(app: App) -> None:
    body = delivery()
    raw = json.dumps(body)[:-1] + ', "deliveryId": "' + body["deliveryId"] + '"}'
    code, answer, headers = call("POST", f"{app.api}/deliveries", raw=raw.encode())
    assert_clean_refusal(code, answer, headers, (202,))
    assert quote(body["deliveryId"]) in answer["statusUrl"]


def test_after_the_http_corpus_the_stack_still_ships(app: App) -> None:
    still_serving(app)
