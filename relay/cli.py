"""Command line: `trace-relay [flags]` runs the relay; `trace-relay send-test-trace` checks one.

The only module that reads ``os.environ``, installs signal handlers or configures logging.
"""

from __future__ import annotations

import os

# gRPC's C core prints its own errors to stderr (a failed bind, for one) before the relay can say
# them in one line of its own. Set before grpc is imported; an operator's GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from relay import sendtest
from relay.app import Relay, StartupError
from relay.config import EXIT_OK, EXIT_SPANS_LOST, EXIT_USAGE, ConfigError, load_config

logger = logging.getLogger("relay")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == sendtest.COMMAND:
        return sendtest.main(args[1:], os.environ)
    try:
        config = load_config(args, os.environ)
    except ConfigError as exc:
        print(f"trace-relay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        relay = Relay(config)
    except StartupError as exc:
        print(f"trace-relay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _serve(relay)


def _serve(relay: Relay) -> int:
    """Run until SIGTERM/SIGINT, then shut down in order. A second signal ends the process at once."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.warning("received %s again; exiting now, spans still queued are lost", name)
            os._exit(EXIT_SPANS_LOST)
        logger.info("received %s; shutting down (send it again to exit at once)", name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    relay.start()
    while not stop.wait(1.0):
        pass
    report = relay.shutdown()
    return EXIT_SPANS_LOST if report.lost else EXIT_OK
