"""``python -m emulators.servicebus --config CONFIG.json``: run the Service Bus emulator.

One process serves AMQP (``--port``, 5672) and the administration API of
``ServiceBusAdministrationClient`` (``--admin-port``, 5300, HTTP and HTTPS; see :mod:`.admin`).
Prints one line naming both addresses once it accepts connections; stops cleanly on SIGTERM/SIGINT.
A configuration that cannot be used prints one line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from .admin import AdminApi, AdminHttpServer, Catalog
from .broker import Broker
from .config import ConfigError, load_config
from .loop import IoLoop, LoopBridge
from .server import AmqpServer
from .store import MemoryStore, SqliteStore

DEFAULT_CONFIG = Path(__file__).with_name("config.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.servicebus",
                                     description="Docker-free Azure Service Bus emulator (AMQP 1.0).")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="Config.json in the shape of Microsoft's emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672, help="AMQP; 0 picks a free port")
    parser.add_argument("--admin-port", type=int, default=5300,
                        help="administration API (HTTP and HTTPS); 0 picks a free port")
    parser.add_argument("--admin-cert", default=None,
                        help="where the administration API's self-signed certificate is kept (PEM; the key "
                             "beside it as .key); default DATA_DIR/admin-cert.pem, or a temporary file in memory")
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
    # The catalog replays entities created, changed or deleted through the administration API
    # over the configuration file before the broker restores their messages.
    catalog = Catalog(config, store)
    broker = Broker(catalog.config, store)
    server = AmqpServer(broker)
    bridge = LoopBridge()
    # In memory, the certificate lasts as long as the process; on disk, it is kept with the data so
    # a client that trusts it keeps doing so across restarts.
    scratch = tempfile.mkdtemp(prefix="servicebus-admin-") if args.in_memory and not args.admin_cert else None
    cert = Path(args.admin_cert) if args.admin_cert else (
        Path(scratch) / "admin-cert.pem" if scratch else Path(args.data_dir) / "admin-cert.pem")
    try:
        admin = AdminHttpServer((args.host, args.admin_port), AdminApi(broker, catalog), bridge, cert)
    except OSError as exc:
        print(f"servicebus emulator: cannot listen on {args.host}:{args.admin_port}: {exc}", file=sys.stderr)
        return 2
    try:
        loop = IoLoop(server, args.host, args.port, bridge)
    except OSError as exc:  # address in use, bad host
        admin.server_close()
        print(f"servicebus emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    server.call_later = loop.call_later
    port = loop.port

    def stop(signum: int, frame: object) -> None:
        loop.stop()

    admin.start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    where = "in memory" if args.in_memory else f"data in {args.data_dir}"
    print(f"Service Bus emulator listening on amqp://{args.host}:{port} "
          f"(namespace {config.name}, {len(config.queues)} queues, {len(config.topics)} topics, {where}); "
          f"administration API on http(s)://{args.host}:{admin.server_address[1]} "
          f"(certificate {admin.cert_path})", flush=True)
    try:
        loop.run()
    finally:
        admin.shutdown()
        admin.server_close()
        bridge.close()
        store.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
