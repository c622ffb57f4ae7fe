import asyncio
import json
import logging
import os
import time

import azure.functions as func

bp = func.Blueprint()


@bp.route(route="items/{id:int}/{name?}", methods=["GET", "POST"])
async def http_item(req: func.HttpRequest) -> func.HttpResponse:
    logging.info("http_item called for %s", req.route_params.get("id"))
    body = {
        "method": req.method,
        "url": req.url,
        "route": dict(req.route_params),
        "params": dict(req.params),
        "header": req.headers.get("x-sample"),
        "body": req.get_body().decode("utf-8"),
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"X-Item": "yes"})


@bp.route(route="items", methods=["POST"])
def http_create(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=201, headers={"Location": "/api/items/42"})


@bp.route(route="items/all", methods=["GET"])
def http_all(req: func.HttpRequest) -> str:
    return "all items"


@bp.route(route="boom")
def http_boom(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("kaboom from the sample")


@bp.route(route="settings/{name}", methods=["GET"])
def http_setting(req: func.HttpRequest) -> func.HttpResponse:
    value = os.environ.get(req.route_params["name"])
    return func.HttpResponse(json.dumps({"value": value}), mimetype="application/json")


@bp.route(route="slow/{seconds:int}", methods=["GET"])
def http_slow(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(int(req.route_params["seconds"]))
    return func.HttpResponse("slept")


@bp.route(route="empty", methods=["GET"])
async def http_empty(req: func.HttpRequest, context: func.Context) -> None:
    await asyncio.sleep(0)
    logging.info("invocation %s of %s", context.invocation_id, context.function_name)
