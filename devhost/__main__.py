"""``python -m devhost``: run ``function_app.py`` locally from its own bindings, like ``func start``.

Usage::

    python -m devhost [--app-dir .] [--port 7071] [--host 127.0.0.1]
                      [--settings local.settings.json] [--shutdown-timeout 30] [--verbose]

Exit status: 0 after a graceful stop (SIGTERM/SIGINT), 2 for settings, host.json or binding
problems (one line on stderr), 1 when the app fails to import or the port cannot be bound.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .host import Options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", default=".", type=Path, help="directory holding function_app.py (default .)")
    parser.add_argument("--port", type=int, default=None,
                        help="HTTP port (default: Host.LocalHttpPort from local settings, else 7071)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file (default: APP_DIR/local.settings.json, else local.settings.json.example)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0,
                        help="seconds running invocations get to finish on SIGTERM/SIGINT (default 30)")
    parser.add_argument("--verbose", action="store_true", help="debug logs from devhost and the Azure SDKs")
    args = parser.parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be 1-65535, got {args.port}")
    # Scripts read our stdout through pipes; make every line visible as it is written.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    return run(Options(
        app_dir=args.app_dir, port=args.port, bind_host=args.host, settings=args.settings,
        shutdown_timeout=args.shutdown_timeout, verbose=args.verbose,
    ))


if __name__ == "__main__":
    sys.exit(main())
