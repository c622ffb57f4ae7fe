"""Run one invocation of a user function the way the Python worker does.

Contract:

* ``async def`` functions run on devhost's event loop; plain functions run in a thread pool
  of ``PYTHON_THREADPOOL_THREAD_COUNT`` threads (default: Python's ``min(32, cpus + 4)``, the
  worker's default), so a blocking function never stalls triggers or HTTP.
* Each ``out`` binding parameter gets a fresh :class:`Out`; a ``context`` parameter gets an
  :class:`InvocationContext` (invocation id, function name and directory).
* One log line when the invocation starts and one when it ends, in ``func start``'s words:
  ``Executing 'Functions.NAME' (Reason='...', Id=...)`` and
  ``Executed 'Functions.NAME' (Succeeded|Failed, Id=..., Duration=Nms)``; a failure is
  also logged with its traceback.
* After the function returns, outputs it set are sent (:class:`devhost.outputs.Outputs`);
  a send failure fails the invocation. :meth:`Invoker.invoke` raises
  :class:`InvocationFailed` on any failure, so each trigger decides what failure means
  (500, abandon, retry).
* :meth:`Invoker.drain` waits for running invocations, for graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext

from .loader import HTTP_OUTPUT, FunctionEntry
from .outputs import Outputs

log = logging.getLogger("devhost.host")
T = TypeVar("T")


class Out(func.Out[T], Generic[T]):
    def __init__(self) -> None:
        self._value: T | None = None
        self.is_set = False

    def set(self, val: T) -> None:
        self._value = val
        self.is_set = True

    def get(self) -> T:
        return self._value  # type: ignore[return-value]


class _TraceContext(TraceContext):
    def __init__(self) -> None:
        trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        self._parent = f"00-{trace_id}-{span_id}-00"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    _local = threading.local()

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace = _TraceContext()
        self._retry = _RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        return self._retry


class InvocationFailed(Exception):
    """The function (or sending its outputs) raised; ``__cause__`` is the original error."""

    def __init__(self, entry: FunctionEntry, invocation_id: str, error: BaseException) -> None:
        super().__init__(f"{entry.log_name} failed: {type(error).__name__}: {error}")
        self.invocation_id = invocation_id
        self.error = error


@dataclass
class Result:
    invocation_id: str
    value: Any
    outputs: dict[str, Any]


def _thread_count() -> int | None:
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
    return int(configured) if configured and configured.isdigit() and int(configured) > 0 else None


class Invoker:
    def __init__(self, outputs: Outputs, app_dir: str) -> None:
        self._outputs = outputs
        self._app_dir = app_dir
        self._executor = ThreadPoolExecutor(max_workers=_thread_count(), thread_name_prefix="devhost-fn")
        self._running: set[asyncio.Future[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return len(self._running)

    async def invoke(self, entry: FunctionEntry, trigger_value: Any, reason: str,
                     extra: Mapping[str, Any] | None = None) -> Result:
        invocation_id = str(uuid.uuid4())
        task = asyncio.ensure_future(self._invoke(entry, invocation_id, trigger_value, reason, extra or {}))
        self._running.add(task)
        self._idle.clear()
        try:
            # Shielded: a caller cancelled by shutdown must not cut a running function short.
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._forget(task)
            else:
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        if not self._running:
            self._idle.set()

    async def _invoke(self, entry: FunctionEntry, invocation_id: str, trigger_value: Any, reason: str,
                      extra: Mapping[str, Any]) -> Result:
        log.info("Executing '%s' (Reason='%s', Id=%s)", entry.log_name, reason, invocation_id)
        kwargs: dict[str, Any] = {entry.trigger.name: trigger_value, **extra}
        outs: dict[str, Out[Any]] = {b.name: Out() for b in entry.outputs if b.name != "$return"}
        kwargs.update(outs)
        if entry.requires_context:
            kwargs["context"] = InvocationContext(invocation_id, entry.name, self._app_dir)
        started = time.monotonic()
        try:
            if entry.is_async:
                value = await entry.user_function(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                call = functools.partial(entry.user_function, **kwargs)
                value = await loop.run_in_executor(self._executor, contextvars.copy_context().run, call)
            values = {name: out.get() for name, out in outs.items() if out.is_set}
            returned = entry.return_binding
            if returned is not None and returned.type != HTTP_OUTPUT:
                values["$return"] = value
            await self._outputs.send(entry, values)
        except Exception as exc:
            duration = int((time.monotonic() - started) * 1000)
            log.error("Executed '%s' (Failed, Id=%s, Duration=%dms)", entry.log_name, invocation_id, duration)
            log.error("Exception while executing function: %s. Result: Failure Exception: %s: %s",
                      entry.log_name, type(exc).__name__, exc, exc_info=exc)
            raise InvocationFailed(entry, invocation_id, exc) from exc
        duration = int((time.monotonic() - started) * 1000)
        log.info("Executed '%s' (Succeeded, Id=%s, Duration=%dms)", entry.log_name, invocation_id, duration)
        return Result(invocation_id, value, {name: out.get() for name, out in outs.items() if out.is_set})

    async def drain(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for running invocations; True when none is left."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        # Threads still running a function are left to finish on their own; we do not wait.
        self._executor.shutdown(wait=False, cancel_futures=True)
