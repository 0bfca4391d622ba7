"""Command line of the keys service: `serve` and `migrate`."""

import sys

from keys_service.main import SERVICE_DIR, create_app
from keys_service.models import SCHEMA
from keys_service.settings import get_settings
from router_common.cli import run_service_cli

if __name__ == "__main__":
    sys.exit(
        run_service_cli(
            service="keys",
            create_app=create_app,
            get_settings=get_settings,
            service_dir=SERVICE_DIR,
            schema=SCHEMA,
        )
    )
