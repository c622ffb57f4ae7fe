"""HTTP surface of the emulator: the Event Grid publish endpoint and a small management API.

Contract (all paths relative to ``http://HOST:PORT``):

  Publishing, as Azure custom topics answer it (what ``EventGridPublisherClient`` calls):
    POST /topics/{topic}/api/events   publish to {topic}
    POST /api/events                  publish to the first configured topic
      401 missing/wrong ``aeg-sas-key`` or invalid ``aeg-sas-token``; 404 unknown topic;
      413 body over 1 MB; 400 malformed batch; 200 with an empty body once the batch is
      durably stored. Error bodies are Azure's ``{"error": {"code", "message", "details"}}``.

  Management (local only, no key):
    GET    /topics                                   topics, schemas, endpoints, subscriptions
    GET    /topics/{topic}/subscriptions             list
    GET    /topics/{topic}/subscriptions/{name}      one
    PUT    /topics/{topic}/subscriptions/{name}      create/replace after the endpoint handshake
    DELETE /topics/{topic}/subscriptions/{name}      remove; its pending deliveries are settled
    GET    /topics/{topic}/events[?type=T][&status=S] published events, oldest first, with
                                                     per-subscription delivery state
    DELETE /topics/{topic}/events                    forget the topic's events (test isolation)
    GET    /health

Topic and subscription names are matched case-insensitively, as Azure resource names are.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .auth import check_publisher
from .config import EVENTGRID_SCHEMA, Config, ConfigError, Subscription, Topic, parse_subscription
from .delivery import Dispatcher, validate_endpoint
from .schema import MAX_BATCH_BYTES, BatchError, parse_batch
from .store import DEAD_LETTERED, DELIVERED, PENDING, PlannedDelivery, Store

log = logging.getLogger("emulators.eventgrid.server")

# Bodies beyond this are not even drained before answering 413; below it we read the
# whole request first so that clients still uploading see the 413 instead of a reset.
_DRAIN_LIMIT = 32 * MAX_BATCH_BYTES

EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator")


class Emulator:
    """Routing table (topics and their live subscriptions) plus the store and dispatcher."""

    def __init__(
        self, config: Config, store: Store, *, time_scale: float = 1.0, delivery_timeout: float = 30.0
    ) -> None:
        self.config = config
        self.store = store
        self.time_scale = time_scale
        self.dispatcher = Dispatcher(store, self.resolve, time_scale=time_scale, timeout=delivery_timeout)

    async def start(self) -> None:
        self._restore_runtime_subscriptions()
        recovered = self.store.recover_leases(time.time())
        if recovered:
            log.info("resuming %d delivery attempt(s) interrupted by the previous shutdown", recovered)
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        self.store.close()

    def topic(self, name: str) -> Topic | None:
        lowered = name.lower()
        return next((t for t in self.config.topics.values() if t.name.lower() == lowered), None)

    def resolve(self, topic_name: str, sub_name: str) -> tuple[Topic, Subscription] | None:
        topic = self.topic(topic_name)
        if topic is None:
            return None
        sub = _find_sub(topic, sub_name)
        return None if sub is None else (topic, sub)

    def _restore_runtime_subscriptions(self) -> None:
        # Subscriptions PUT at runtime outlive restarts, so their pending deliveries can resume.
        for topic_name, spec in self.store.load_subscriptions():
            topic = self.topic(topic_name)
            if topic is None:
                log.warning("ignoring stored subscription for unknown topic %r", topic_name)
                continue
            try:
                sub = parse_subscription(spec, topic, f"stored subscription on {topic_name}")
            except ConfigError as exc:
                log.warning("ignoring stored subscription: %s", exc)
                continue
            _put_sub(topic, sub)


def build_app(emulator: Emulator) -> web.Application:
    app = web.Application(middlewares=[_json_errors])
    app[EMULATOR_KEY] = emulator

    async def on_startup(_: web.Application) -> None:
        await emulator.start()

    async def on_cleanup(_: web.Application) -> None:
        await emulator.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.add_routes(
        [
            web.post("/api/events", _publish_default),
            web.post("/topics/{topic}/api/events", _publish),
            web.get("/health", _health),
            web.get("/topics", _list_topics),
            web.get("/topics/{topic}/subscriptions", _list_subscriptions),
            web.get("/topics/{topic}/subscriptions/{name}", _get_subscription),
            web.put("/topics/{topic}/subscriptions/{name}", _put_subscription),
            web.delete("/topics/{topic}/subscriptions/{name}", _delete_subscription),
            web.get("/topics/{topic}/events", _list_events),
            web.delete("/topics/{topic}/events", _clear_events),
        ]
    )
    return app


# -- publishing ---------------------------------------------------------------------------


async def _publish_default(request: web.Request) -> web.StreamResponse:
    return await _publish_to(request, request.app[EMULATOR_KEY].config.default_topic)


async def _publish(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR_KEY]
    topic = emulator.topic(request.match_info["topic"])
    if topic is None:
        known = ", ".join(emulator.config.topics)
        return azure_error(
            404,
            "NotFound",
            f"Topic '{request.match_info['topic']}' does not exist (configured: {known}).",
            "ResourceNotFound",
        )
    return await _publish_to(request, topic)


async def _publish_to(request: web.Request, topic: Topic) -> web.StreamResponse:
    emulator = request.app[EMULATOR_KEY]
    failure = check_publisher(request.headers, topic, request.path, request.host)
    if failure is not None:
        return azure_error(401, "Unauthorized", failure.message, failure.code)

    body = await _read_body(request)
    if body is None:
        return azure_error(
            413,
            "RequestEntityTooLarge",
            f"The request body exceeds the {MAX_BATCH_BYTES}-byte limit for a batch (and for any single event).",
            "PayloadTooLarge",
        )
    try:
        events = parse_batch(body, request.headers.get("Content-Type"), topic)
    except BatchError as exc:
        return azure_error(400, "BadRequest", str(exc), exc.code)

    now = time.time()
    subs = list(topic.subscriptions.values())
    plans = [
        [
            PlannedDelivery(
                s.name, s.max_delivery_attempts, now + s.event_ttl_minutes * 60 * emulator.time_scale
            )
            for s in subs
            if s.matches(ev.type, ev.subject)
        ]
        for ev in events
    ]
    emulator.store.add_events(topic.name, events, plans, now)
    emulator.dispatcher.notify()
    log.info(
        "accepted %d event(s) on %s (%d deliveries queued)", len(events), topic.name, sum(map(len, plans))
    )
    return web.Response(status=200, headers={"x-ms-request-id": str(uuid.uuid4())})


async def _read_body(request: web.Request) -> bytes | None:
    """The whole body, or None when it is over the batch limit."""
    if request.content_length is not None and request.content_length > _DRAIN_LIMIT:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > _DRAIN_LIMIT:
            return None
        if size <= MAX_BATCH_BYTES:
            chunks.append(chunk)
    return b"".join(chunks) if size <= MAX_BATCH_BYTES else None


# -- management ---------------------------------------------------------------------------


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _list_topics(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    base = f"{request.scheme}://{request.host}"
    default = emulator.config.default_topic.name
    return web.json_response(
        [
            {
                "name": t.name,
                "inputSchema": t.input_schema,
                "endpoint": f"{base}/topics/{t.name}/api/events",
                **({"aliasEndpoint": f"{base}/api/events"} if t.name == default else {}),
                "subscriptions": [s.name for s in t.subscriptions.values()],
            }
            for t in emulator.config.topics.values()
        ]
    )


async def _list_subscriptions(request: web.Request) -> web.Response:
    topic = _topic_or_404(request)
    return web.json_response([s.to_json() for s in topic.subscriptions.values()])


async def _get_subscription(request: web.Request) -> web.Response:
    topic = _topic_or_404(request)
    sub = _find_sub(topic, request.match_info["name"])
    if sub is None:
        return _mgmt_error(
            404, f"Subscription '{request.match_info['name']}' does not exist on topic '{topic.name}'."
        )
    return web.json_response(sub.to_json())


async def _put_subscription(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    topic = _topic_or_404(request)
    name = request.match_info["name"]
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _mgmt_error(400, "The request body must be a JSON object describing the subscription.")
    try:
        sub = parse_subscription(raw, topic, "subscription", name=name)
    except ConfigError as exc:
        return _mgmt_error(400, str(exc))

    problem = await validate_endpoint(emulator.dispatcher.session, topic, sub)
    if problem is not None:
        kind = "webhook validation" if sub.delivery_schema == EVENTGRID_SCHEMA else "CloudEvents OPTIONS"
        log.warning("subscription %s/%s not created: %s", topic.name, name, problem)
        return _mgmt_error(
            400, f"The {kind} handshake with {sub.endpoint} failed: {problem}.", "HandshakeFailed"
        )

    existed = _put_sub(topic, sub)
    emulator.store.save_subscription(topic.name, sub.name, sub.to_json())
    log.info("subscription %s/%s -> %s (%s)", topic.name, sub.name, sub.endpoint, sub.delivery_schema)
    return web.json_response(sub.to_json(), status=200 if existed else 201)


async def _delete_subscription(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    topic = _topic_or_404(request)
    sub = _find_sub(topic, request.match_info["name"])
    if sub is None:
        return _mgmt_error(
            404, f"Subscription '{request.match_info['name']}' does not exist on topic '{topic.name}'."
        )
    del topic.subscriptions[sub.name]
    emulator.store.delete_subscription(topic.name, sub.name)
    settled = emulator.store.dead_letter_pending(topic.name, sub.name, "SubscriptionDeleted")
    return web.json_response({"deleted": sub.name, "pendingDeliveriesDeadLettered": settled})


async def _list_events(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    topic = _topic_or_404(request)
    status = request.query.get("status")
    if status is not None and status not in (PENDING, DELIVERED, DEAD_LETTERED):
        return _mgmt_error(400, f"status must be one of {PENDING}, {DELIVERED}, {DEAD_LETTERED}.")
    events = emulator.store.list_events(topic.name, request.query.get("type"), status)
    return web.json_response(events)


async def _clear_events(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    topic = _topic_or_404(request)
    return web.json_response({"deletedEvents": emulator.store.clear_topic(topic.name)})


# -- helpers ------------------------------------------------------------------------------


def _topic_or_404(request: web.Request) -> Topic:
    emulator = request.app[EMULATOR_KEY]
    topic = emulator.topic(request.match_info["topic"])
    if topic is None:
        raise web.HTTPNotFound(
            text=json.dumps(
                {
                    "error": {
                        "code": "NotFound",
                        "message": f"Topic '{request.match_info['topic']}' does not exist.",
                    }
                }
            ),
            content_type="application/json",
        )
    return topic


def _find_sub(topic: Topic, name: str) -> Subscription | None:
    lowered = name.lower()
    return next((s for n, s in topic.subscriptions.items() if n.lower() == lowered), None)


def _put_sub(topic: Topic, sub: Subscription) -> bool:
    existing = _find_sub(topic, sub.name)
    if existing is not None:
        del topic.subscriptions[existing.name]
    topic.subscriptions[sub.name] = sub
    return existing is not None


def azure_error(status: int, code: str, message: str, detail_code: str | None = None) -> web.Response:
    """Azure's data-plane error shape, report suffix included, so SDK error text looks familiar."""
    request_id = str(uuid.uuid4())
    stamp = datetime.now(UTC)
    when = f"{stamp.month}/{stamp.day}/{stamp.year} {stamp.strftime('%I:%M:%S %p').lstrip('0')}"
    full = f"{message} Report '{request_id}:{when} (UTC)' to our forums for assistance or raise a support ticket."
    body: dict[str, Any] = {
        "error": {"code": code, "message": full, "details": [{"code": detail_code or code, "message": full}]}
    }
    return web.json_response(body, status=status, headers={"x-ms-request-id": request_id})


def _mgmt_error(status: int, message: str, code: str | None = None) -> web.Response:
    default = {400: "BadRequest", 404: "NotFound"}.get(status, "Error")
    return web.json_response({"error": {"code": code or default, "message": message}}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    # aiohttp's own 404/405 are plain text; clients of this API parse JSON errors.
    try:
        return await handler(request)
    except web.HTTPNotFound as exc:
        if exc.content_type == "application/json":
            raise
        return azure_error(
            404, "NotFound", f"No resource matches {request.method} {request.path}.", "ResourceNotFound"
        )
    except web.HTTPMethodNotAllowed:
        return azure_error(405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}.")
