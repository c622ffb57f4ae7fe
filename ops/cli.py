"""``python -m ops``: the operator's commands.

* ``trace <deliveryId> | <clientId>/<fileName> | <fileId>`` one journey as a timeline (``--json``
  for the spans); exit 2 when no trace names it.
* ``map`` the choreography as Mermaid, derived from the code (``--observed``: as the trace store
  saw it; ``--readme``: write it into README.md between its markers, what ``make docs`` runs).
* ``dlq list|show|resubmit|purge`` dead letters and parked messages (see :mod:`ops.dlq`).

Exit codes: 0 done; 1 what was asked for is not there (no such dead letter, no journey), or
some of it failed; 2 a usage problem (a bad filter, an unknown entity, no connection string).

Spans are read from the local trace store (the running one, else ``.devstack/traces.sqlite``),
``--store URL|FILE``, or Application Insights with ``--app-insights <resource id>``
(or ``OPS_APP_INSIGHTS``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from choreography.settings import SERVICE_BUS_CONNECTION, STORAGE_CONNECTION

from . import dlq, journey
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
    _dlq_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "trace":
            return _trace(args)
        if args.command == "dlq":
            return _dlq(args)
        return _map(args)
    except (NoSource, dlq.DlqError) as exc:
        print(f"ops: {exc}", file=sys.stderr)
        return 2


def _dlq_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("dlq", help="dead letters and parked messages: list, show, resubmit, purge")
    parser.add_argument("--servicebus", help=f"Service Bus connection string (default: {SERVICE_BUS_CONNECTION})")
    parser.add_argument("--storage", help=f"storage connection string (default: {STORAGE_CONNECTION})")
    parser.add_argument("--admin", help="the administration API's connection string when it is not the namespace's "
                                        f"(the local emulator's port 5300; default: {dlq.ADMIN_CONNECTION})")
    parser.add_argument("--admin-cert", help="a PEM certificate to trust for it (the local emulator's self-signed "
                                             f"one; default: {dlq.ADMIN_CERTIFICATE})")
    actions = parser.add_subparsers(dest="action", required=True)

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--entity", help="the queue or topic/subscriptions/name it failed in")
        p.add_argument("--reason", help="a reason code, e.g. MaxDeliveryCountExceeded")
        p.add_argument("--correlation-id", help="a delivery id or a payment file id")
        p.add_argument("--older-than", type=_duration, help="e.g. 7d, 12h, 30m")
        p.add_argument("--younger-than", type=_duration, help="e.g. 1h")

    listing = actions.add_parser("list", help="every dead letter and parked message")
    filters(listing)
    listing.add_argument("--all", action="store_true", help="every remediation decision too (retried, closed...)")
    listing.add_argument("--json", action="store_true")
    shown = actions.add_parser("show", help="one dead letter: properties and body")
    shown.add_argument("id", help="its id (or its original message id)")
    again = actions.add_parser("resubmit", help="back to the entity it failed in, and only there")
    again.add_argument("id", nargs="?", help="one dead letter; or select several with the filters")
    filters(again)
    purged = actions.add_parser("purge", help="remove dead letters (a filter is required)")
    filters(purged)
    purged.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _duration(raw: str) -> timedelta:
    try:
        return dlq.duration(raw)
    except dlq.DlqError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dlq(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    with dlq.DeadLetters(dlq.setting(SERVICE_BUS_CONNECTION, args.servicebus),
                         dlq.setting(STORAGE_CONNECTION, args.storage),
                         dlq.optional_setting(dlq.ADMIN_CONNECTION, args.admin),
                         dlq.optional_setting(dlq.ADMIN_CERTIFICATE, args.admin_cert)) as letters:
        if args.action == "show":
            try:
                print(dlq.show(letters.find(args.id), now))
            except LookupError as exc:
                print(f"ops dlq: {exc}", file=sys.stderr)
                return 1
            return 0
        chosen = dlq.Filter(args.entity, args.reason, args.correlation_id, args.older_than, args.younger_than, now)
        letters.check_entity(args.entity)
        if args.action == "list":
            found = [x for x in letters.letters(args.all) if chosen(x)]
            if args.json:
                print(json.dumps([x.to_json(now) for x in found], indent=2))
            else:
                print(dlq.table(found, now) if found else "no dead letters")
            for warning in letters.warnings:
                print(f"ops dlq: {warning}", file=sys.stderr)
            return 1 if letters.warnings else 0
        if args.action == "resubmit":
            return _resubmit(letters, args, chosen, now)
        return _purge(letters, args, chosen, now)


def _resubmit(letters: dlq.DeadLetters, args: argparse.Namespace, chosen: dlq.Filter, now: datetime) -> int:
    if args.id:
        try:
            targets = [letters.find(args.id)]
        except LookupError as exc:
            print(f"ops dlq: {exc}", file=sys.stderr)
            return 1
    elif chosen.empty():
        raise dlq.DlqError("resubmit what? give an id, or select with --reason/--entity/--correlation-id/--older-than")
    else:
        targets = [x for x in letters.letters() if chosen(x) and x.state != dlq.UNDECIDED]
    failed = 0
    for letter in targets:
        try:
            copy = letters.resubmit(letter, now)
        except dlq.DlqError as exc:
            print(f"ops dlq: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"resubmitted {letter.id} to {letter.record.entity} as {copy}")
    if not targets:
        print("nothing matched: no dead letter resubmitted")
    return 1 if failed or not targets else 0


def _purge(letters: dlq.DeadLetters, args: argparse.Namespace, chosen: dlq.Filter, now: datetime) -> int:
    if chosen.empty():
        raise dlq.DlqError("purge needs a filter (--reason, --entity, --correlation-id, --older-than): "
                           "it never purges everything")
    targets = [x for x in letters.letters() if chosen(x) and x.state != dlq.UNDECIDED]
    if not targets:
        print("nothing matched: nothing purged")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise dlq.DlqError(f"{len(targets)} dead letters match; confirm with --yes (no terminal to ask on)")
        answer = input(f"purge {len(targets)} dead letters? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing purged")
            return 1
    for letter in targets:
        letters.purge(letter, now)
    print(f"purged {len(targets)} dead letters")
    return 0


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
