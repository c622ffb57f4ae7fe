import json
import logging
import uuid

import azure.functions as func

from .records import record

bp = func.Blueprint()


@bp.event_grid_trigger(arg_name="event")
def eg_notifications(event: func.EventGridEvent) -> None:
    data = event.get_json()
    logging.info("event %s of type %s", event.id, event.event_type)
    record(data["tag"], "eg_notifications", id=event.id, event_type=event.event_type, subject=event.subject,
           data=data, kind=type(event).__name__)
    if data.get("fail"):
        raise RuntimeError("asked to fail")


@bp.event_grid_trigger(arg_name="event")
def eg_cloud(event) -> None:
    data = event.data if hasattr(event, "data") else event.get_json()
    record(data["tag"], "eg_cloud", id=event.id, type=getattr(event, "type", None),
           source=getattr(event, "source", None), kind=type(event).__name__, data=data)


@bp.route(route="publish/{tag}", methods=["POST"])
@bp.event_grid_output(arg_name="outbox", topic_endpoint_uri="OUTBOX_TOPIC_ENDPOINT",
                      topic_key_setting="OUTBOX_TOPIC_KEY")
def http_publish(req: func.HttpRequest, outbox: func.Out[func.EventGridOutputEvent]) -> func.HttpResponse:
    tag = req.route_params["tag"]
    count = int(req.params.get("count", "1"))
    events = [
        func.EventGridOutputEvent(
            id=str(uuid.uuid4()), data={"tag": tag, "n": n}, subject=f"outbox/{tag}/{n}",
            event_type="Sample.Published", event_time=None, data_version="1.0",
        )
        for n in range(count)
    ]
    outbox.set(events if count > 1 else events[0])
    return func.HttpResponse(json.dumps({"published": count}), status_code=202, mimetype="application/json")
