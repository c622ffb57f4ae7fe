"""Command line entry point: ``python -m emulators.eventgrid``.

Contract:
  * Prints exactly one line to stdout, ``Event Grid emulator listening on http://HOST:PORT``,
    once the socket accepts connections (``--port 0`` picks a free port and the line names
    it); everything else is logged to stderr.
  * A configuration that cannot be used prints one line to stderr naming the problem and
    exits with status 2 (the same status argparse uses for bad arguments). A port that
    cannot be bound exits with status 1.
  * SIGTERM and SIGINT stop it cleanly (exit status 0): in-flight delivery attempts are
    abandoned, stay pending in the store and are retried on the next start.
  * ``--retry-scale`` (or ``EVENTGRID_RETRY_SCALE``) multiplies Azure's retry delays and
    event time-to-live; 0.001 turns the 10 s first retry into 10 ms for tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from .config import ConfigError, load_config
from .server import Emulator, build_app
from .store import Store

DEFAULT_CONFIG = Path(__file__).with_name("config.json")
DEFAULT_DATA_DIR = Path(".devstack") / "eventgrid"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m emulators.eventgrid", description="Local Azure Event Grid emulator."
    )
    p.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="topics/subscriptions JSON (default: %(default)s)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument(
        "--port", type=int, default=6080, help="port to bind, 0 for any free port (default: %(default)s)"
    )
    store = p.add_mutually_exclusive_group()
    store.add_argument(
        "--data-dir", default=str(DEFAULT_DATA_DIR), help="SQLite state directory (default: %(default)s)"
    )
    store.add_argument("--in-memory", action="store_true", help="keep all state in memory (tests)")
    p.add_argument(
        "--retry-scale",
        type=float,
        default=float(os.environ.get("EVENTGRID_RETRY_SCALE", "1")),
        help="multiply retry delays and event TTL by this factor (env EVENTGRID_RETRY_SCALE; default: %(default)s)",
    )
    p.add_argument(
        "--delivery-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for a subscriber's response, as Azure does (default: %(default)s)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    if not args.retry_scale > 0:
        p.error("--retry-scale must be greater than 0")
    if not args.delivery_timeout > 0:
        p.error("--delivery-timeout must be greater than 0")
    return args


async def _serve(args: argparse.Namespace, emulator: Emulator) -> int:
    # Handlers go in before the "listening" line: whoever waits for that line may signal at once.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = build_app(emulator)
    runner = web.AppRunner(
        app, access_log=logging.getLogger("aiohttp.access") if args.log_level == "debug" else None
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except OSError as exc:
            print(
                f"eventgrid emulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        port = runner.addresses[0][1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        base = f"http://{host}:{port}"
        print(f"Event Grid emulator listening on {base}", flush=True)
        log = logging.getLogger("emulators.eventgrid")
        for i, topic in enumerate(emulator.config.topics.values()):
            alias = f" (also {base}/api/events)" if i == 0 else ""
            log.info(
                "topic %s [%s]: %s/topics/%s/api/events%s",
                topic.name,
                topic.input_schema,
                base,
                topic.name,
                alias,
            )
        log.info("state: %s", emulator.store.location)

        await stop.wait()
        log.info("shutting down")
        return 0
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print("eventgrid emulator: invalid config: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    store = Store(None if args.in_memory else args.data_dir)
    emulator = Emulator(config, store, time_scale=args.retry_scale, delivery_timeout=args.delivery_timeout)
    return asyncio.run(_serve(args, emulator))


if __name__ == "__main__":
    sys.exit(main())
