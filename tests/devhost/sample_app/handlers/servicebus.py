import json
import logging
import time

import azure.functions as func

from .records import record

bp = func.Blueprint()


def _seen(msg: func.ServiceBusMessage) -> dict:
    return {
        "body": msg.get_body().decode("utf-8"),
        "message_id": msg.message_id,
        "session_id": msg.session_id,
        "correlation_id": msg.correlation_id,
        "content_type": msg.content_type,
        "subject": msg.subject,
        "label": msg.label,
        "application_properties": msg.application_properties,
        "delivery_count": msg.delivery_count,
        "sequence_number": msg.sequence_number,
        "enqueued_time_utc": msg.enqueued_time_utc.isoformat() if msg.enqueued_time_utc else None,
        "lock_token": msg.lock_token,
    }


@bp.service_bus_queue_trigger(arg_name="msg", queue_name="orders", connection="ServiceBusConnection")
def sb_orders(msg: func.ServiceBusMessage) -> None:
    seen = _seen(msg)
    payload = json.loads(seen["body"])
    time.sleep(payload.get("sleep", 0))
    record(payload["tag"], "sb_orders", **seen)
    if payload.get("fail"):
        raise RuntimeError(f"asked to fail (delivery {msg.delivery_count})")
    logging.info("order %s handled", msg.message_id)


@bp.service_bus_queue_trigger(arg_name="msg", queue_name="sessions", connection="ServiceBusConnection",
                              is_sessions_enabled=True)
async def sb_sessions(msg: func.ServiceBusMessage) -> None:
    seen = _seen(msg)
    payload = json.loads(seen["body"])
    record(payload["tag"], "sb_sessions", **seen)


@bp.service_bus_topic_trigger(arg_name="msg", topic_name="events", subscription_name="devhost",
                              connection="ServiceBusConnection")
def sb_events(msg: func.ServiceBusMessage) -> None:
    seen = _seen(msg)
    record(json.loads(seen["body"])["tag"], "sb_events", **seen)


@bp.service_bus_queue_trigger(arg_name="msgs", queue_name="batch", connection="ServiceBusConnection",
                              cardinality="many")
def sb_batch(msgs: list[func.ServiceBusMessage]) -> None:
    for msg in msgs:
        seen = _seen(msg)
        record(json.loads(seen["body"])["tag"], "sb_batch", batch_size=len(msgs), **seen)
