"""``python -m ops``: the operator's commands.

* ``trace <deliveryId> | <clientId>/<fileName> | <fileId>`` one journey as a timeline (``--json``
  for the spans); exit 2 when no trace names it.
* ``map`` the choreography as Mermaid, derived from the code (``--observed``: as the trace store
  saw it; ``--readme``: write it into README.md between its markers, what ``make docs`` runs).

Spans are read from the local trace store (the running one, else ``.devstack/traces.sqlite``),
``--store URL|FILE``, or Application Insights with ``--app-insights <resource id>``
(or ``OPS_APP_INSIGHTS``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import journey
from . import map as choreography_map
from .sources import NoSource, open_source

README = Path(__file__).resolve().parents[1] / "README.md"


def _sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="trace store URL (http://...) or SQLite file; default: the local one")
    parser.add_argument("--app-insights", help="Application Insights resource id (azure-monitor-query)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops", description="Operate the choreography.")
    sub = parser.add_subparsers(dest="command", required=True)
    trace = sub.add_parser("trace", help="one delivery's or payment file's journey")
    trace.add_argument("id", help="a delivery id, clientId/fileName, or a payment file id")
    trace.add_argument("--json", action="store_true", help="the spans as JSON")
    trace.add_argument("--all", action="store_true", help="every span, the SDKs' included")
    _sources(trace)
    drawn = sub.add_parser("map", help="the choreography map (Mermaid), derived from the code")
    drawn.add_argument("--observed", action="store_true", help="the edges the trace store saw, with latencies")
    drawn.add_argument("--readme", action="store_true", help="write the map into README.md between its markers")
    _sources(drawn)
    args = parser.parse_args(argv)
    try:
        if args.command == "trace":
            return _trace(args)
        return _map(args)
    except NoSource as exc:
        print(f"ops: {exc}", file=sys.stderr)
        return 2


def _trace(args: argparse.Namespace) -> int:
    source = open_source(args.store, args.app_insights)
    try:
        found = journey.find(source, args.id)
    except journey.UnknownJourney as exc:
        print(f"ops trace: {exc}. Is it the right id, did the journey run with tracing on "
              "(OTEL_EXPORTER_OTLP_ENDPOINT or APPLICATIONINSIGHTS_CONNECTION_STRING)?", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        print(journey.timeline(found, show_all=args.all))
    return 0


def _map(args: argparse.Namespace) -> int:
    derived = choreography_map.derive()
    if args.observed:
        observed = choreography_map.observe(open_source(args.store, args.app_insights).spans(1_000_000))
        print(choreography_map.mermaid(choreography_map.observed_choreography(derived, observed),
                                       observed.labels()), end="")
        undeclared = sorted(set(observed.edges) - derived.pairs())
        for sender, message_type, receiver in undeclared:
            print(f"%% !! observed but not declared: {sender} -> {message_type} -> {receiver}")
        return 1 if undeclared else 0
    text = choreography_map.mermaid(derived)
    if args.readme:
        README.write_text(choreography_map.replace_in_readme(README.read_text(), text))
        print(f"wrote the choreography map into {README.name}")
    else:
        print(text, end="")
    for problem in choreography_map.problems(derived):
        print(f"ops map: {problem}", file=sys.stderr)
    return 0
