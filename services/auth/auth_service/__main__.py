"""Command line of the auth service: `serve`, `migrate` and `create-admin`."""

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Callable

import pydantic

from auth_service.main import SERVICE_DIR, AdminOutcome, create_app, ensure_admin
from auth_service.models import SCHEMA
from auth_service.schemas import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    normalise_email,
)
from auth_service.settings import get_settings
from router_common.cli import run_service_cli


def _create_admin_command(
    parser: argparse.ArgumentParser,
) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--email", required=True, help="email of the new admin")

    def run(args: argparse.Namespace) -> int:
        try:
            email = normalise_email(args.email)
        except ValueError as error:
            print(f"--email: {error}", file=sys.stderr)
            return 2
        # Read from the environment for scripts, otherwise prompted for. Never an
        # argument, because arguments are visible to other users of the machine.
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

        async def create() -> AdminOutcome:
            app = create_app()
            async with app.router.lifespan_context(app):
                return await ensure_admin(app, email, password)

        outcome = asyncio.run(create())
        if outcome is AdminOutcome.TAKEN_BY_USER:
            print(
                f"{email} belongs to a plain user account; no admin was created.",
                file=sys.stderr,
            )
            return 1
        if outcome is AdminOutcome.ALREADY_ADMIN:
            print(f"{email} is already an admin; nothing changed.")
            return 0
        print(f"Created the admin {email}.")
        return 0

    return run


def main() -> int:
    try:
        return run_service_cli(
            service="auth",
            create_app=create_app,
            get_settings=get_settings,
            service_dir=SERVICE_DIR,
            schema=SCHEMA,
            extra_commands={
                "create-admin": ("create an admin account", _create_admin_command)
            },
            # Client addresses come from the X-Real-IP of trusted proxies only
            # (see `deps.client_address`), so uvicorn must not rewrite the peer.
            proxy_headers=False,
        )
    except pydantic.ValidationError as error:
        for problem in error.errors():
            print(f"Invalid settings: {problem['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
