"""``python -m emulators.servicebus --config CONFIG.json``: run the Service Bus emulator.

Prints one line naming the address once it accepts connections; stops cleanly on SIGTERM/SIGINT.
A configuration that cannot be used prints one line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from proton.reactor import Container

from .broker import Broker
from .config import ConfigError, load_config
from .server import AmqpServer
from .store import MemoryStore, SqliteStore

DEFAULT_CONFIG = Path(__file__).with_name("config.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.servicebus",
                                     description="Docker-free Azure Service Bus emulator (AMQP 1.0).")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="Config.json in the shape of Microsoft's emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672, help="0 picks a free port")
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument("--data-dir", default=".devstack/servicebus", help="where SQLite keeps messages")
    storage.add_argument("--in-memory", action="store_true", help="keep nothing on disk")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("proton").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"servicebus emulator: invalid configuration: {exc}", file=sys.stderr)
        return 2

    store = MemoryStore() if args.in_memory else SqliteStore(args.data_dir)
    broker = Broker(config, store)
    container = Container(AmqpServer(broker))
    container.container_id = "servicebus-emulator"
    try:
        acceptor = container.listen(f"amqp://{args.host}:{args.port}")
    except Exception as exc:  # address in use, bad host
        print(f"servicebus emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    port = acceptor._selectable._delegate.getsockname()[1]  # the real port when --port 0

    def stop(signum: int, frame: object) -> None:
        container.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    where = "in memory" if args.in_memory else f"data in {args.data_dir}"
    print(f"Service Bus emulator listening on amqp://{args.host}:{port} "
          f"(namespace {config.name}, {len(config.queues)} queues, {len(config.topics)} topics, {where})",
          flush=True)
    try:
        container.run()
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
