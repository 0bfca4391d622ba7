"""The command line every service shares: `serve`, `migrate` and its own extras."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from router_common.app import serve
from router_common.db import upgrade_to_head
from router_common.settings import ServiceSettings

# A service's own command: adds its arguments to the parser it is given and
# returns the function that runs it.
ExtraCommand = Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]


def run_service_cli(
    *,
    service: str,
    create_app: Callable[[], FastAPI],
    get_settings: Callable[[], ServiceSettings],
    service_dir: Path,
    schema: str,
    extra_commands: dict[str, tuple[str, ExtraCommand]] | None = None,
    proxy_headers: bool = True,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {service}_service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the HTTP API (and gRPC, where it has one)")
    commands.add_parser("migrate", help="apply pending database migrations")
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    for name, (help_text, build) in (extra_commands or {}).items():
        runners[name] = build(commands.add_parser(name, help=help_text))

    args = parser.parse_args()
    if args.command == "serve":
        serve(create_app(), get_settings(), proxy_headers=proxy_headers)
        return 0
    if args.command == "migrate":
        settings = get_settings()
        upgrade_to_head(service_dir, settings.database_url, schema)
        return 0
    return runners[args.command](args)
