"""Command line of the providers service: `serve` and `migrate`."""

import sys

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
        )
    )
