"""The choreography map derived from code (ops.map) and the @flow declarations behind it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from choreography.entities import Destination
from choreography.flow import UndeclaredPublication, check, declared, flow, to
from ops import map as choreography_map

ORDERS = Destination("orders", "topic")
RESULTS = Destination("results", "queue", sessions=True)
AUDIT = Destination("audit", "queue")
NEWS = Destination("news", "eventgrid")
README = Path(__file__).resolve().parents[3] / "README.md"



def label_rule(expression: str) -> list[dict[str, Any]]:
    return [{"Name": "r", "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": expression}}}]


SERVICEBUS = {"UserConfig": {"Namespaces": [{
    "Name": "ns", "Queues": [{"Name": "results"}, {"Name": "audit"}],
    "Topics": [{"Name": "orders", "Subscriptions": [
        {"Name": "billing", "Rules": label_rule("sys.Label = 'OrderPlaced'")},
        {"Name": "stock", "Rules": label_rule("sys.Label IN ('OrderPlaced', 'Restock')")}]}]}]}}
EVENTGRID = [{"topic": "news", "name": "n", "function": "shop_on_news", "includedEventTypes": ["OrderDone"]}]


def small_app() -> list[Any]:
    """An app of known shape: HTTP -> topic (two filtered subscriptions) -> session queue -> Event Grid,
    plus a message nobody consumes (Lost, to a queue no function listens on), an event for
    subscribers outside the app (OrderAudited), and a trigger nothing feeds (audit_reader)."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("shop_order")
    @app.route(route="orders", methods=["POST"])
    @flow(to(ORDERS, "OrderPlaced"))
    def shop_order(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    @app.function_name("billing_on_order")
    @app.service_bus_topic_trigger(arg_name="message", connection="SB", topic_name="orders",
                                   subscription_name="billing")
    @flow(to(RESULTS, "Billed"), to(ORDERS, "Restock"))
    def billing_on_order(message: func.ServiceBusMessage) -> None: ...

    @app.function_name("stock_on_order")
    @app.service_bus_topic_trigger(arg_name="message", connection="SB", topic_name="orders",
                                   subscription_name="stock")
    @flow(to(RESULTS, "Reserved"), to(Destination("nowhere", "queue"), "Lost"))
    def stock_on_order(message: func.ServiceBusMessage) -> None: ...

    @app.function_name("join_results")
    @app.service_bus_queue_trigger(arg_name="message", connection="SB", queue_name="results",
                                   is_sessions_enabled=True)
    @flow(to(NEWS, "OrderDone", "OrderAudited"))
    def join_results(message: func.ServiceBusMessage) -> None: ...

    @app.function_name("shop_on_news")
    @app.event_grid_trigger(arg_name="event")
    @flow()
    def shop_on_news(event: func.EventGridEvent) -> None: ...

    @app.function_name("audit_reader")
    @app.service_bus_queue_trigger(arg_name="message", connection="SB", queue_name="audit")
    @flow()
    def audit_reader(message: func.ServiceBusMessage) -> None: ...

    return list(app.get_functions())


@pytest.fixture(scope="module")
def shape() -> choreography_map.Choreography:
    return choreography_map.derive(small_app(), SERVICEBUS, EVENTGRID)


def test_edges_follow_the_subscription_filters_queues_and_event_grid(shape: choreography_map.Choreography) -> None:
    assert shape.pairs() == {
        ("shop_order", "OrderPlaced", "billing_on_order"),
        ("shop_order", "OrderPlaced", "stock_on_order"),
        ("billing_on_order", "Restock", "stock_on_order"),  # billing's filter does not take Restock
        ("billing_on_order", "Billed", "join_results"),
        ("stock_on_order", "Reserved", "join_results"),
        ("join_results", "OrderDone", "shop_on_news"),
    }


def test_it_flags_what_nobody_consumes_and_the_trigger_nothing_feeds(shape: choreography_map.Choreography) -> None:
    assert [(e.source, e.message_type) for e in shape.unconsumed] == [("stock_on_order", "Lost")]
    assert [(e.source, e.message_type) for e in shape.external] == [("join_results", "OrderAudited")]
    assert [t.function for t in shape.unfed] == ["audit_reader"]
    assert choreography_map.problems(shape) == [
        "nobody consumes Lost sent by stock_on_order to queue nowhere",
        "nothing in the app feeds audit_reader (servicebus audit)",
    ]


def test_mermaid_draws_entries_services_and_labelled_edges(shape: choreography_map.Choreography) -> None:
    text = choreography_map.mermaid(shape)
    assert text.startswith("flowchart LR\n")
    assert '  http_shop_order(["HTTP POST /api/orders"]) --> shop_order' in text
    assert '  shop_order -->|"OrderPlaced<br/>(topic orders)"| billing_on_order' in text
    assert '  join_results -->|"OrderDone<br/>(eventgrid news)"| shop_on_news' in text
    assert "!! nobody consumes Lost on queue nowhere" in text
    assert "subgraph billing[billing]" not in text  # services come from the module: all in this test module
    counted = choreography_map.mermaid(shape, {("shop_order", "OrderPlaced", "billing_on_order"): "n=3 p50 2 ms"})
    assert '  shop_order -->|"OrderPlaced n=3 p50 2 ms<br/>(topic orders)"| billing_on_order' in counted


def test_a_flow_refuses_an_undeclared_publication_and_keeps_the_signature() -> None:
    @flow(to(RESULTS, "Billed"))
    def handler(message: func.ServiceBusMessage) -> str:
        check(RESULTS, "Billed")
        check(AUDIT, "Billed")
        return "unreachable"

    with pytest.raises(UndeclaredPublication, match="handler sends Billed to queue 'audit'"):
        handler(func.ServiceBusMessage(body=b"{}"))
    assert list(inspect.signature(handler).parameters) == ["message"]
    assert declared(handler) == declared(handler) and declared(handler).function == "handler"  # type: ignore[union-attr]
    check(AUDIT, "Anything")  # outside a function nothing is checked


def test_the_readme_shows_the_map_of_the_code() -> None:
    """``make docs`` writes it; this fails when the README's copy is stale."""
    text = choreography_map.mermaid(choreography_map.derive())
    assert choreography_map.readme_block(text) in README.read_text(), "README's map is stale: run make docs"
