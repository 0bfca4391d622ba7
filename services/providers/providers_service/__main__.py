"""Command line of the providers service: `serve`, `migrate`, `rotate-secrets`."""

import sys

from providers_service import rotation
from providers_service.main import SERVICE_DIR, create_app
from providers_service.models import SCHEMA
from providers_service.settings import get_settings
from router_common.cli import run_service_cli

if __name__ == "__main__":
    sys.exit(
        run_service_cli(
            service="providers",
            create_app=create_app,
            get_settings=get_settings,
            service_dir=SERVICE_DIR,
            schema=SCHEMA,
            extra_commands={
                "rotate-secrets": (
                    "re-encrypt every provider API key with the first key of "
                    "PROVIDER_SECRET_KEYS",
                    rotation.add_command,
                )
            },
        )
    )
