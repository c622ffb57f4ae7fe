"""pytest plugin for the conformance run (loaded with ``-p conformance_plugin``).

* the shim's ``servicebus_preparer`` is imported first, so the tests get it, never Microsoft's;
* clients pointed at the emulator speak plain AMQP (what ``UseDevelopmentEmulator=true`` does
  for connection strings; the tests that pass a host and a credential cannot say so themselves);
* the tests the suite skips as "Pending management apis" run;
* ``@pytest.mark.asyncio`` tests run on a fresh event loop (pytest-asyncio's strict mode,
  without installing it): an ``async def`` test *without* the marker is left to pytest, which
  does not run it, exactly as under pytest-asyncio;
* each test's start and outcome go to ``CONFORMANCE_RESULTS`` (JSON lines) as they happen, so the
  runner knows which test was running if it has to kill a hung process;
* when collecting (``CONFORMANCE_ENTITIES_OUT``), the entities the preparers registered are
  written out as the emulator's configuration.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
from typing import Any

import pytest
import servicebus_preparer  # noqa: F401  (must win over the suite's own module of that name)

_RESULTS = os.environ.get("CONFORMANCE_RESULTS")
_ENTITIES_OUT = os.environ.get("CONFORMANCE_ENTITIES_OUT")


def _emulator_address(address: Any) -> bool:
    emulator = f"{servicebus_preparer.EMULATOR_HOST}:{servicebus_preparer.EMULATOR_PORT}"
    return isinstance(address, str) and emulator in address


def _plain_amqp(init: Any, address_arg: int) -> Any:
    @functools.wraps(init)
    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        address = kwargs.get("fully_qualified_namespace", args[address_arg] if len(args) > address_arg else None)
        if _emulator_address(address):
            # from_connection_string passes use_tls=True for a connection string the test built
            # itself without UseDevelopmentEmulator (Azure's form); the emulator has no TLS.
            kwargs["use_tls"] = False
        init(self, *args, **kwargs)
    return patched


def _install_plain_amqp() -> None:
    from azure.servicebus import ServiceBusClient
    from azure.servicebus._base_handler import BaseHandler
    from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
    from azure.servicebus.aio._base_handler_async import BaseHandler as AsyncBaseHandler

    for cls in (ServiceBusClient, AsyncServiceBusClient, BaseHandler, AsyncBaseHandler):
        cls.__init__ = _plain_amqp(cls.__init__, 0)  # type: ignore[method-assign]


_install_plain_amqp()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "asyncio: run this coroutine test on an event loop")


# The suite skips the tests of entity listing through ServiceBusClient with this reason; the issue
# asks for them to run, so the runner reports what they do (tools/conformance SUITE_DEFECTS).
PENDING_MANAGEMENT = "Pending management apis"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        pending = [m for m in item.own_markers
                   if m.name == "skip" and m.kwargs.get("reason", m.args[0] if m.args else "") == PENDING_MANAGEMENT]
        for marker in pending:
            item.own_markers.remove(marker)


@pytest.fixture(scope="session")
def test_proxy() -> None:
    """Nothing is recorded: every test runs live."""


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj) or pyfuncitem.get_closest_marker("asyncio") is None:
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


def _record(entry: dict[str, Any]) -> None:
    if _RESULTS:
        with open(_RESULTS, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _record({"event": "start", "nodeid": nodeid})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        if report.when == "teardown" and report.outcome == "passed":
            return
        detail = ""
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            # The suite marks it as an expected failure: xfailed is not counted, xpassed is a pass.
            outcome = "xfailed" if report.outcome == "skipped" else "passed"
            detail = str(report.wasxfail)
        elif report.outcome == "failed":
            detail = _first_error_line(report)
        elif report.outcome == "skipped" and isinstance(report.longrepr, tuple):
            detail = str(report.longrepr[2])
        _record({"event": "result", "nodeid": report.nodeid, "when": report.when,
                 "outcome": outcome, "duration": round(report.duration, 1), "detail": detail})


def _first_error_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300] if crash.message else ""
    return str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ""


def pytest_collection_finish(session: pytest.Session) -> None:
    if not _ENTITIES_OUT:
        return
    with open(_ENTITIES_OUT, "w", encoding="utf-8") as out:
        json.dump({"config": servicebus_preparer.entity_config(),
                   "tests": [item.nodeid for item in session.items]}, out, indent=1)
