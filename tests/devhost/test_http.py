"""HTTP triggers: route templates, methods, request/response mapping, failures, admin status."""

from __future__ import annotations

import asyncio
import socket
from typing import ClassVar

import azure.functions as func
import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer

from devhost.http import HttpFront, compile_route
from devhost.loader import Binding, FunctionEntry, LoadError
from devstack.stack import DevHost

from .support import SAMPLE_APP


def entry(route: str | None, methods: list[str] | None = None, name: str = "fn") -> FunctionEntry:
    props = {"route": route} if route is not None else {}
    if methods:
        props["methods"] = methods
    return FunctionEntry(name=name, trigger=Binding("req", "httpTrigger", "in", props), outputs=(),
                         user_function=lambda req: None, is_async=False, requires_context=False)


class TestRouteTemplates:
    def test_params_optional_and_int_constraint(self) -> None:
        route = compile_route(entry("items/{id:int}/{name?}"), "api")
        assert route.match("/api/items/5/bob") == {"id": "5", "name": "bob"}
        assert route.match("/api/items/5") == {"id": "5"}
        assert route.match("/api/items/five") is None
        assert route.match("/api/items/99999999999") is None  # int is 32-bit
        assert route.match("/api/other/5") is None

    def test_literals_ignore_case_and_values_keep_it(self) -> None:
        route = compile_route(entry("Orders/{Code}"), "api")
        assert route.match("/API/orders/AbC") == {"Code": "AbC"}

    def test_default_catch_all_and_complex_segments(self) -> None:
        assert compile_route(entry("files/{kind=pdf}"), "api").match("/api/files") == {"kind": "pdf"}
        assert compile_route(entry("files/{*path}"), "api").match("/api/files/a/b/c.txt") == {"path": "a/b/c.txt"}
        assert compile_route(entry("report-{year:int}.{ext}"), "").match("/report-2024.csv") == {
            "year": "2024", "ext": "csv"}

    def test_more_constraints(self) -> None:
        route = compile_route(entry("x/{a:alpha}/{b:guid}/{c:range(1,3)}/{d:length(2)}/{e:bool}"), "api")
        good = "/api/x/abc/6f1c3a52-4c1a-4f0e-9d3b-2a8f5a1b7c9d/2/ab/true"
        assert route.match(good) is not None
        assert route.match(good.replace("/2/", "/7/")) is None
        assert route.match(good.replace("/abc/", "/ab1/")) is None

    def test_default_route_is_the_function_name_and_prefix_can_be_empty(self) -> None:
        assert compile_route(entry(None, name="Hello"), "api").match("/api/hello") == {}
        assert compile_route(entry("hello"), "").match("/hello") == {}

    def test_unknown_constraint_is_a_startup_error(self) -> None:
        with pytest.raises(LoadError, match="not supported"):
            compile_route(entry("x/{id:banana}"), "api")

    def test_literal_routes_take_precedence_over_parameters(self) -> None:
        front = HttpFront([entry("items/{id}", name="one"), entry("items/all", name="all")], "api",
                          invoker=None, host_id="h", eventgrid_handler=None)  # type: ignore[arg-type]
        assert [r.entry.name for r in front.routes] == ["all", "one"]


def test_status_is_503_until_running_then_200() -> None:
    async def scenario() -> tuple[int, int, str]:
        front = HttpFront([], "api", invoker=None, host_id="h", eventgrid_handler=None)  # type: ignore[arg-type]
        async with TestClient(TestServer(front.build())) as client:
            before = await client.get("/admin/host/status")
            front.state = "Running"
            after = await client.get("/admin/host/status")
            return before.status, after.status, (await after.json())["state"]

    assert asyncio.run(scenario()) == (503, 200, "Running")


class _Answering:
    """Stands in for the invoker: every function answers 200 "hi"."""

    class Result:
        outputs: ClassVar[dict[str, object]] = {}
        value = func.HttpResponse("hi")
        invocation_id = "inv"

    async def invoke(self, entry: FunctionEntry, value: object, reason: str) -> object:
        return self.Result()


def test_http_functions_wait_for_every_trigger_to_listen_and_refuse_while_stopping(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[bool, int, int, str, int]:
        front = HttpFront([entry("health")], "api", invoker=_Answering(), host_id="h",  # type: ignore[arg-type]
                          eventgrid_handler=None)
        async with TestClient(TestServer(front.build())) as client:
            early = asyncio.create_task(client.get("/api/health"))
            await asyncio.sleep(0.3)
            held = not early.done()  # held while the triggers start, like the Functions host
            front.state = "Running"
            answered = (await early).status
            front.state = "Stopping"
            stopping = await client.get("/api/health")
            front.state = "Initialized"
            monkeypatch.setattr("devhost.http.STARTUP_HOLD_SECONDS", 0.1)
            late = await client.get("/api/health")
            return held, answered, stopping.status, stopping.content_type, late.status

    assert asyncio.run(scenario()) == (True, 200, 503, "application/problem+json", 503)


class TestServedBySampleApp:
    def test_route_params_query_headers_and_body(self, devhost: DevHost) -> None:
        resp = requests.post(devhost.url("/api/items/7/widget?a=1&a=2&b=x"), data=b"payload",
                             headers={"X-Sample": "hdr"}, timeout=30)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["X-Item"] == "yes"
        body = resp.json()
        assert body["method"] == "POST"
        assert body["route"] == {"id": "7", "name": "widget"}
        assert body["params"] == {"a": "1,2", "b": "x"}
        assert body["header"] == "hdr"
        assert body["body"] == "payload"
        assert body["url"] == devhost.url("/api/items/7/widget?a=1&a=2&b=x")

    def test_optional_parameter_may_be_absent(self, devhost: DevHost) -> None:
        resp = requests.get(devhost.url("/api/items/7"), timeout=30)
        assert resp.json()["route"] == {"id": "7"}

    def test_constraint_mismatch_unknown_route_and_method_are_404(self, devhost: DevHost) -> None:
        assert requests.get(devhost.url("/api/items/seven"), timeout=30).status_code == 404
        assert requests.get(devhost.url("/api/nowhere"), timeout=30).status_code == 404
        assert requests.delete(devhost.url("/api/items/7"), timeout=30).status_code == 404
        assert requests.get(devhost.url("/items/7"), timeout=30).status_code == 404  # outside the prefix

    def test_literal_route_beats_parameter_route(self, devhost: DevHost) -> None:
        resp = requests.get(devhost.url("/api/items/all"), timeout=30)
        assert resp.status_code == 200
        assert resp.text == "all items"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"

    def test_status_and_location_header(self, devhost: DevHost) -> None:
        resp = requests.post(devhost.url("/api/items"), timeout=30, allow_redirects=False)
        assert resp.status_code == 201
        assert resp.headers["Location"] == "/api/items/42"

    def test_none_is_204_and_context_is_passed(self, devhost: DevHost) -> None:
        resp = requests.get(devhost.url("/api/empty"), timeout=30)
        assert resp.status_code == 204
        devhost.wait_for("of http_empty")  # the function logged context.function_name

    def test_exception_is_500_problem_json_and_logged(self, devhost: DevHost) -> None:
        resp = requests.get(devhost.url("/api/boom"), timeout=30)
        assert resp.status_code == 500
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        problem = resp.json()
        assert problem["title"] == "Internal Server Error"
        assert problem["status"] == 500
        assert "kaboom" not in problem["detail"] and "ValueError" not in problem["detail"]
        assert problem["invocationId"] in problem["detail"]
        devhost.wait_for(f"Executed 'Functions.http_boom' (Failed, Id={problem['invocationId']}")
        devhost.wait_for('raise ValueError("kaboom from the sample")')  # the traceback

    def test_invocations_are_logged_with_id_and_duration(self, devhost: DevHost) -> None:
        requests.get(devhost.url("/api/items/1"), timeout=30)
        devhost.wait_for("Executing 'Functions.http_item' (Reason=")
        line = devhost.wait_for("Executed 'Functions.http_item' (Succeeded, Id=")
        assert "Duration=" in line and line.endswith("ms)")
        devhost.wait_for("http_item called for 1")  # logging from the function itself

    def test_admin_status_is_running(self, devhost: DevHost) -> None:
        resp = requests.get(devhost.url("/admin/host/status"), timeout=30)
        assert resp.status_code == 200
        assert resp.json()["state"] == "Running"

    def test_startup_lists_functions_like_func_start(self, devhost: DevHost) -> None:
        devhost.wait_for(f"http_item: [GET,POST] {devhost.base}/api/items/{{id:int}}/{{name?}}")
        devhost.wait_for("sb_sessions: serviceBusTrigger (session queue sessions)")
        devhost.wait_for(f"eg_notifications: eventGridTrigger (webhook {devhost.base}/runtime/webhooks/eventgrid"
                         "?functionName=eg_notifications)")
        devhost.wait_for("blob_uploads: blobTrigger (uploads/{tag}/{name})")

    def test_http_request_is_the_real_type(self) -> None:
        # Guard the type the sample relies on: azure.functions' own HttpRequest.
        req = func.HttpRequest("GET", "http://x/api/a", headers={}, params={}, route_params={"a": "1"}, body=b"")
        assert req.route_params == {"a": "1"}


@pytest.fixture(scope="module")
def impatient_host(host_env: dict[str, str]):
    host = DevHost({**host_env, "DEVHOST_HTTP_BODY_TIMEOUT_SECONDS": "1"}, app_dir=SAMPLE_APP).start()
    yield host
    host.stop()


class TestRequestsThatNeverFinish:
    """Clients that declare a body and stall (or never send it) are answered and closed; the host
    keeps serving everyone else meanwhile."""

    @pytest.fixture
    def host(self, impatient_host: DevHost) -> DevHost:
        return impatient_host

    @staticmethod
    def _stalled(host: DevHost, declared: int, sent: bytes) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", host.port), timeout=60)
        conn.sendall(f"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {declared}\r\n\r\n".encode() + sent)
        return conn

    @staticmethod
    def _answer(conn: socket.socket) -> bytes:
        chunks = []
        while chunk := conn.recv(65536):  # the host closes the connection after answering
            chunks.append(chunk)
        return b"".join(chunks)

    def test_a_stalled_body_is_408_and_others_are_served_meanwhile(self, host: DevHost) -> None:
        stalled = [self._stalled(host, 100, b'{"id": 1, ') for _ in range(50)]
        try:
            answered = requests.get(host.url("/api/items/7"), timeout=30)
            assert answered.status_code == 200
            for conn in stalled:
                head, _, body = self._answer(conn).partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408"), head
                assert b"application/problem+json" in head and b"did not arrive within 1 s" in body
        finally:
            for conn in stalled:
                conn.close()

    def test_a_body_declared_and_never_sent_is_408(self, host: DevHost) -> None:
        with self._stalled(host, 5_000, b"") as conn:
            assert self._answer(conn).startswith(b"HTTP/1.1 408")

    def test_a_declared_body_over_the_limit_is_413_without_waiting_for_it(self, host: DevHost) -> None:
        with self._stalled(host, 10 * 1024 ** 3, b"") as conn:
            head = conn.recv(65536)  # waiting for the body instead would be a 408 after 1 s
            assert head.startswith(b"HTTP/1.1 413"), head
