"""``python -m devstack up | demo | seed``: the local stack's one entry point (used by ``make``).

* ``up``   Azurite, both emulators and devhost on the ports of ``local.settings.json.example``,
           data under ``.devstack/``, and the live view (http://127.0.0.1:7072/); prints the
           URLs and stops everything on Ctrl-C.
* ``demo`` the main job on embedded defaults: a fresh in-memory stack on free ports, seeded,
           about twenty deliveries including ones that must fail, each one's journey shown;
           exits 0 only if every delivery ends as expected.
* ``soak`` the chaos soak (``make soak``, :mod:`devstack.soak`): deliveries and payment files
           on a durable stack while devhost and the Service Bus emulator are killed and Azurite
           paused; exits 0 only if nothing was lost or done twice.
* ``seed`` seeds reference data (the drone fleet, the payment reference table) into the
           storage named by ``AzureWebJobsStorage`` (default: the local Azurite).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .stack import ROOT, Ports, Stack, run_until_interrupted


def _print_urls(stack: Stack) -> None:
    p = stack.ports
    print(f"""
Local stack is up (Ctrl-C stops everything):
  Functions (devhost)   {stack.functions_url}/api/...   health: {stack.functions_url}/api/health
  Service Bus emulator  amqp://127.0.0.1:{p.servicebus}   ServiceBusConnection={stack.servicebus_connection}
                        administration API https://127.0.0.1:{p.servicebus_admin} (ServiceBusAdministrationClient)
                        ServiceBusAdminConnection={stack.servicebus_admin_connection}
                        ServiceBusAdminCertificate={stack.servicebus_admin_certificate} (its connection_verify)
  Event Grid emulator   {stack.eventgrid_url}/topics/deliveries/api/events
                        published events: {stack.eventgrid_url}/topics/deliveries/events
  Azurite               blob :{p.blob}  queue :{p.queue}  table :{p.table}   containers and tables created
                        AzureWebJobsStorage={stack.storage_connection}
  Trace store           {stack.traces_url}/v1/traces (OTLP/HTTP)   a journey: python -m ops trace <deliveryId>
  Live view             {stack.view_url}   the map, deliveries, files, journeys, dead letters (in a browser)
  Logs                  .devstack/logs/
""", flush=True)


def _func_start_hint(stack: Stack) -> str:
    return ("Once `func start` is up, subscribe its Event Grid trigger as Azure would:\n"
            f"  curl -X PUT {stack.eventgrid_url}/topics/deliveries/subscriptions/notifications "
            "-H 'Content-Type: application/json' -d '{\"endpoint\": "
            "\"http://127.0.0.1:7071/runtime/webhooks/eventgrid?functionName=notifications_on_delivery_event\"}'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole local stack until Ctrl-C")
    up.add_argument("--data-dir", default=str(ROOT / ".devstack"))
    up.add_argument("--in-memory", action="store_true")
    up.add_argument("--free-ports", action="store_true",
                    help="free ports instead of local.settings.json.example's (tests; the URLs are printed)")
    up.add_argument("--no-devhost", action="store_true",
                    help="start only Azurite and the emulators, for `func start` in another terminal")
    demo = sub.add_parser("demo", help="run the drone delivery demo on a fresh stack")
    demo.add_argument("--deliveries", type=int, default=20)
    sub.add_parser("seed", help="seed reference data into AzureWebJobsStorage")
    soak = sub.add_parser("soak", help="chaos soak on a durable stack; invariants checked from the stores")
    soak.add_argument("--deliveries", type=int, default=1000)
    soak.add_argument("--files", type=int, default=20)
    soak.add_argument("--devhost-kills", type=int, default=5)
    soak.add_argument("--servicebus-kills", type=int, default=2)
    soak.add_argument("--azurite-pauses", type=int, default=2)
    soak.add_argument("--rate", type=float, default=10.0, help="deliveries submitted per second")
    soak.add_argument("--seed", type=int, default=None, help="repeat a run's workload and chaos")
    soak.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary folder")
    soak.add_argument("--timeout", type=float, default=900.0, help="seconds for everything to end")
    args = parser.parse_args(argv)

    if args.command == "up":
        from .seed import seed_all

        data_dir = None if args.in_memory else Path(args.data_dir)
        stack = Stack(ports=Ports.free() if args.free_ports else Ports.default(), data_dir=data_dir,
                      log_dir=ROOT / ".devstack" / "logs",
                      with_devhost=False, with_view=True)

        def ready(s: Stack) -> None:
            seed_all(s.storage_connection)
            if args.no_devhost:
                print(f"\nEmulators are up; run `func start` now (Ctrl-C here stops them).\n{_func_start_hint(s)}",
                      flush=True)
                return
            s.start_devhost()
            _print_urls(s)

        return run_until_interrupted(stack, ready)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.deliveries)
    if args.command == "soak":
        from .soak import Options, print_report, run_soak

        report = run_soak(Options(args.deliveries, args.files, args.devhost_kills, args.servicebus_kills,
                                  args.azurite_pauses, rate=args.rate, seed=args.seed, data_dir=args.data_dir,
                                  timeout=args.timeout))
        print_report(report)
        return 1 if report.violations else 0
    if args.command == "seed":
        import os

        from .seed import seed_all

        # Unset: the seeders read AzureWebJobsStorage__accountName (Azure, as `az login`), else Azurite.
        seed_all(os.environ.get("AzureWebJobsStorage", ""))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
