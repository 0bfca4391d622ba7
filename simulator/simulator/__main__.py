"""Run the provider simulator: `python -m simulator --host 127.0.0.1 --port 8199`."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from .app import create_app

# Hanging requests poll for client disconnects, so shutdown waits at most this
# long for the ones whose clients are still connected.
GRACEFUL_SHUTDOWN_SECONDS = 3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulate the OpenAI Images, Stability AI and midjourney-proxy "
        "APIs for Image Router's tests, demo and benchmarks.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8199,
        help="TCP port to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level, where debug also logs every call (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The access log is off because request paths can contain `key=<secret>`;
    # the simulator logs calls itself, with that value redacted.
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


if __name__ == "__main__":
    main()
