"""Push delivery to webhook subscribers, with Azure's retry and dead-letter rules, and the
endpoint-validation handshakes run when a subscription is created.

Contract:
  * ``Dispatcher`` owns every outbound POST. It reads due deliveries from the ``Store``,
    leases them, posts each event on its own task, and records the outcome before the
    lease is released. Publishing only writes rows and calls ``notify()``; it never waits
    on a subscriber.
  * Outcome rules (Azure's, per its "delivery and retry" documentation): 200-204 is
    delivered; 400, 401, 403 and 413 dead-letter at once; anything else, a timeout or a
    connection error is retried after 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h,
    6 h, then every 12 h, until ``maxDeliveryAttempts`` or the event's time to live runs
    out. ``time_scale`` multiplies those delays and the time to live (tests use 0.001).
  * A subscriber that hangs costs at most ``timeout`` seconds per attempt and at most
    ``per_subscription_limit`` concurrent attempts; other subscriptions keep their own
    budget, so one dead endpoint cannot starve the rest.
  * ``validate_endpoint`` performs the Event Grid ``SubscriptionValidationEvent``
    handshake (Event Grid schema) or the CloudEvents HTTP OPTIONS abuse-protection check
    (CloudEvents schema) and returns ``None`` on success or a one-line reason.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import uuid
from collections.abc import Callable

import aiohttp

from .config import CLOUDEVENT_SCHEMA, EVENTGRID_SCHEMA, Subscription, Topic
from .schema import delivery_payload, validation_event
from .store import DueDelivery, Store

log = logging.getLogger("emulators.eventgrid.delivery")

RETRY_SCHEDULE_SECONDS = (10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600)
LATER_RETRY_SECONDS = 12 * 3600
NON_RETRIABLE_STATUS = frozenset({400, 401, 403, 413})
ABUSE_PROTECTION_ORIGIN = "eventgrid.azure.net"

_BATCH = 256
_LEASE_MARGIN_SECONDS = 30.0
_MAX_IDLE_WAIT_SECONDS = 60.0

Resolver = Callable[[str, str], "tuple[Topic, Subscription] | None"]


def retry_delay(attempts_made: int) -> float:
    """Seconds to wait after the ``attempts_made``-th failed attempt (1-based)."""
    if attempts_made <= len(RETRY_SCHEDULE_SECONDS):
        return float(RETRY_SCHEDULE_SECONDS[attempts_made - 1])
    return float(LATER_RETRY_SECONDS)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        resolve: Resolver,
        *,
        time_scale: float = 1.0,
        timeout: float = 30.0,
        per_subscription_limit: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._resolve = resolve
        self._scale = time_scale
        self._timeout = timeout
        self._limit = per_subscription_limit
        self._clock = clock
        self._wake = asyncio.Event()
        self._inflight: collections.Counter[tuple[str, str]] = collections.Counter()
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Dispatcher.start() not called"
        return self._session

    async def start(self) -> None:
        # limit=0: the per-subscription budget is the only cap, so a pool shared with a
        # hung endpoint can never run dry for healthy ones.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        self._runner = asyncio.create_task(self._run(), name="eventgrid-dispatcher")

    async def stop(self) -> None:
        # Cancelled attempts keep their lease in the store; the next start retries them.
        pending = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def notify(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                throttled, more = self._schedule()
                next_due = self._store.next_due_at()
            except Exception:  # a broken scheduler pass must not end delivery for good
                log.exception("delivery scheduling failed; retrying in 1s")
                throttled, more, next_due = True, False, None
            if more:
                continue
            if throttled:
                wait: float | None = 1.0  # woken sooner when an attempt finishes
            elif next_due is not None:
                wait = min(max(0.0, next_due - self._clock()), _MAX_IDLE_WAIT_SECONDS)
            else:
                wait = None
            if wait == 0.0:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    def _schedule(self) -> tuple[bool, bool]:
        now = self._clock()
        due = self._store.due(now, _BATCH)
        claimed: list[DueDelivery] = []
        throttled = False
        for d in due:
            key = (d.topic, d.subscription)
            if self._inflight[key] >= self._limit:
                throttled = True
                continue
            self._inflight[key] += 1
            claimed.append(d)
        if claimed:
            self._store.lease([d.id for d in claimed], now + self._timeout + _LEASE_MARGIN_SECONDS)
        for d in claimed:
            task = asyncio.create_task(self._attempt(d))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return throttled, len(due) == _BATCH and bool(claimed)

    async def _attempt(self, d: DueDelivery) -> None:
        key = (d.topic, d.subscription)
        try:
            await self._attempt_inner(d)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease expires and the delivery is tried again: at-least-once beats lost.
            log.exception("delivery %s to %s/%s failed unexpectedly", d.id, d.topic, d.subscription)
        finally:
            self._inflight[key] -= 1
            if self._inflight[key] <= 0:
                del self._inflight[key]
            self._wake.set()

    async def _attempt_inner(self, d: DueDelivery) -> None:
        now = self._clock()
        resolved = self._resolve(d.topic, d.subscription)
        if resolved is None:
            self._store.mark_dead_lettered(
                d.id, d.attempts, None, "subscription no longer exists", "SubscriptionDeleted", now
            )
            return
        topic, sub = resolved
        if now >= d.expires_at:
            self._store.mark_dead_lettered(d.id, d.attempts, None, None, "TimeToLiveExceeded", now)
            return

        body, content_type = delivery_payload(d.payload, d.event_schema, topic, sub.delivery_schema)
        headers = {
            "Content-Type": content_type,
            "aeg-event-type": "Notification",
            "aeg-subscription-name": sub.name.upper(),
            "aeg-delivery-count": str(d.attempts),
            "aeg-metadata-version": "1",
        }
        if sub.delivery_schema == EVENTGRID_SCHEMA:
            headers["aeg-data-version"] = str(d.payload.get("dataVersion", ""))

        attempt = d.attempts + 1
        status: int | None = None
        error: str | None = None
        try:
            async with self.session.post(
                sub.endpoint, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                if not 200 <= status <= 204:
                    snippet = (await resp.content.read(300)).decode("utf-8", "replace").strip()
                    error = f"HTTP {status} {resp.reason or ''}".rstrip() + (
                        f": {snippet}" if snippet else ""
                    )
        except TimeoutError:
            error = f"no response within {self._timeout:g}s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"

        now = self._clock()
        where = f"{d.topic}/{sub.name} event {d.payload.get('id')!r} attempt {attempt}"
        if status is not None and 200 <= status <= 204:
            self._store.mark_delivered(d.id, attempt, status, now)
            log.info("delivered %s -> HTTP %s", where, status)
        elif status in NON_RETRIABLE_STATUS:
            self._store.mark_dead_lettered(d.id, attempt, status, error, f"NonRetriableStatus{status}", now)
            log.warning("dead-lettered %s: %s (not retried)", where, error)
        elif attempt >= d.max_attempts:
            self._store.mark_dead_lettered(d.id, attempt, status, error, "MaxDeliveryAttemptsExceeded", now)
            log.warning("dead-lettered %s: %s (max delivery attempts reached)", where, error)
        else:
            next_at = now + retry_delay(attempt) * self._scale
            if next_at >= d.expires_at:
                self._store.mark_dead_lettered(d.id, attempt, status, error, "TimeToLiveExceeded", now)
                log.warning("dead-lettered %s: %s (time to live exhausted)", where, error)
            else:
                self._store.mark_retry(d.id, attempt, status, error or "", next_at, now)
                log.info("retrying %s in %.3gs: %s", where, next_at - now, error)


async def validate_endpoint(session: aiohttp.ClientSession, topic: Topic, sub: Subscription) -> str | None:
    try:
        if sub.delivery_schema == CLOUDEVENT_SCHEMA:
            return await _options_handshake(session, sub)
        return await _validation_event_handshake(session, topic, sub)
    except TimeoutError:
        return "the endpoint did not answer in time"
    except aiohttp.ClientError as exc:
        return f"the endpoint could not be reached ({type(exc).__name__}: {exc})"


async def _validation_event_handshake(
    session: aiohttp.ClientSession, topic: Topic, sub: Subscription
) -> str | None:
    code = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "aeg-event-type": "SubscriptionValidation",
        "aeg-subscription-name": sub.name.upper(),
        "aeg-delivery-count": "0",
        "aeg-metadata-version": "1",
        "aeg-data-version": "2",
    }
    async with session.post(
        sub.endpoint, data=validation_event(topic, code), headers=headers, allow_redirects=False
    ) as resp:
        text = (await resp.content.read(4096)).decode("utf-8", "replace")
        if resp.status != 200:
            return f"the SubscriptionValidationEvent was answered with HTTP {resp.status}, expected 200"
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return 'the SubscriptionValidationEvent response is not a JSON object like {"validationResponse": "<code>"}'
    # Receivers differ in casing (ValidationResponse from .NET serializers); Azure accepts both.
    echoed = next((v for k, v in answer.items() if k.lower() == "validationresponse"), None)
    if echoed != code:
        return f"validationResponse was {echoed!r}, expected the validationCode {code!r}"
    return None


async def _options_handshake(session: aiohttp.ClientSession, sub: Subscription) -> str | None:
    headers = {"WebHook-Request-Origin": ABUSE_PROTECTION_ORIGIN, "WebHook-Request-Rate": "120"}
    async with session.options(sub.endpoint, headers=headers, allow_redirects=False) as resp:
        await resp.read()
        if resp.status != 200:
            return (f"the CloudEvents OPTIONS abuse-protection request was answered with HTTP {resp.status}, "
                    "expected 200")
        allowed = resp.headers.get("WebHook-Allowed-Origin")
    if allowed is None:
        return "the OPTIONS response lacks the WebHook-Allowed-Origin header"
    origins = {o.strip().lower() for o in allowed.split(",")}
    if "*" not in origins and ABUSE_PROTECTION_ORIGIN not in origins:
        return f"WebHook-Allowed-Origin is {allowed!r}; it must be '*' or '{ABUSE_PROTECTION_ORIGIN}'"
    return None
