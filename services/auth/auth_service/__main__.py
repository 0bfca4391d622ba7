"""Command line of the auth service: `serve`, `migrate` and `create-admin`."""

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Callable

from auth_service.main import SERVICE_DIR, create_app, ensure_admin
from auth_service.models import SCHEMA
from auth_service.schemas import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from auth_service.settings import get_settings
from router_common.cli import run_service_cli


def _create_admin_command(
    parser: argparse.ArgumentParser,
) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--email", required=True, help="email of the new admin")

    def run(args: argparse.Namespace) -> int:
        # Read from the environment for scripts, otherwise asked for, never an argument.
        password = os.environ.get("NEW_ADMIN_PASSWORD") or getpass.getpass(
            "Password for the new admin: "
        )
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            print(
                f"The password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} "
                "characters.",
                file=sys.stderr,
            )
            return 2

        async def create() -> None:
            app = create_app()
            async with app.router.lifespan_context(app):
                await ensure_admin(app, args.email.lower(), password)

        asyncio.run(create())
        return 0

    return run


if __name__ == "__main__":
    sys.exit(
        run_service_cli(
            service="auth",
            create_app=create_app,
            get_settings=get_settings,
            service_dir=SERVICE_DIR,
            schema=SCHEMA,
            extra_commands={
                "create-admin": ("create an admin account", _create_admin_command)
            },
        )
    )
