"""Command line of the generation service: `serve`, `migrate` and `worker`."""

import argparse
import asyncio
import sys
from collections.abc import Callable

from generation_service.main import SERVICE_DIR, create_app
from generation_service.models import SCHEMA
from generation_service.settings import get_settings
from generation_service.worker import run_worker
from router_common.cli import run_service_cli
from router_common.logging import configure_logging


def _worker_command(
    parser: argparse.ArgumentParser,
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = get_settings()
        configure_logging("generation-worker", settings.log_level)
        asyncio.run(run_worker(settings))
        return 0

    return run


if __name__ == "__main__":
    sys.exit(
        run_service_cli(
            service="generation",
            create_app=create_app,
            get_settings=get_settings,
            service_dir=SERVICE_DIR,
            schema=SCHEMA,
            extra_commands={
                "worker": (
                    "run asynchronous and orphaned generation jobs",
                    _worker_command,
                )
            },
        )
    )
