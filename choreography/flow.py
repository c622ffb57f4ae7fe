"""What each function publishes, declared next to its handler, and the span of its invocation.

``@flow(to(DELIVERY_EVENTS_QUEUE, PackageReserved, PackageRejected))`` under a function's trigger
decorator states where the function sends what; the one publisher (:mod:`.publishing`) refuses
to send anything else while the function runs (:class:`UndeclaredPublication`, a bug that fails
the tests), so the declarations cannot drift from the code. ``python -m ops map`` draws the
choreography from them and from the triggers the app registers.

The decorator also opens the invocation's span (:func:`.telemetry.invocation`): SERVER for HTTP,
CONSUMER for Service Bus, Event Grid and blob triggers, child of the trace context the trigger
carries (the message's ``traceparent`` property, the request's header, the CloudEvent's
extension). A blob upload starts a new trace.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from opentelemetry.trace import SpanKind

from .contracts import Contract
from .entities import Destination
from .telemetry import invocation
from .triggers import Described, describe

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Route:
    """Message types a function may send to one destination."""

    destination: Destination
    types: tuple[str, ...]


def to(destination: Destination, *messages: type[Contract] | str) -> Route:
    """``messages`` (contracts, or CloudEvent type names for an Event Grid topic) sent to ``destination``."""
    return Route(destination, tuple(m if isinstance(m, str) else m.TYPE for m in messages))


@dataclass(frozen=True)
class Flow:
    function: str
    service: str
    publishes: tuple[Route, ...]

    def allows(self, destination: Destination, message_type: str) -> bool:
        return any(r.destination == destination and message_type in r.types for r in self.publishes)


class UndeclaredPublication(RuntimeError):
    """A function sent a message its ``@flow`` does not declare: declare it, or do not send it."""


_running: contextvars.ContextVar[Flow | None] = contextvars.ContextVar("choreography_flow", default=None)


def flow(*publishes: Route) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        declared = Flow(function.__name__, function.__module__.split(".")[0], publishes)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                described = describe([*kwargs.values(), *args])
            except Exception:  # noqa: BLE001 - tracing never fails an invocation
                log.warning("%s: its trigger could not be described for tracing", declared.function, exc_info=True)
                described = Described(SpanKind.CONSUMER, "other", None)
            token = _running.set(declared)
            try:
                with invocation(declared.function, declared.service, described.kind, described.trigger,
                                described.traceparent, described.tracestate, described.attributes):
                    return function(*args, **kwargs)
            finally:
                _running.reset(token)

        run.__flow__ = declared  # type: ignore[attr-defined]
        return cast(F, run)

    return decorate


def declared(function: Callable[..., Any]) -> Flow | None:
    """The ``@flow`` declaration of a registered function, if it has one."""
    found = getattr(function, "__flow__", None)
    return found if isinstance(found, Flow) else None


def running() -> Flow | None:
    """The declaration of the function running in this context, if any."""
    return _running.get()


def check(destination: Destination, message_type: str) -> None:
    """Raise when the running function has not declared sending ``message_type`` to ``destination``."""
    running = _running.get()
    if running is not None and not running.allows(destination, message_type):
        raise UndeclaredPublication(f"{running.function} sends {message_type} to {destination.kind} "
                                    f"{destination.name!r} but its @flow does not declare it")
