"""Command line of the generation service: `serve` and `migrate`."""

import sys

from generation_service.main import SERVICE_DIR, create_app
from generation_service.models import SCHEMA
from generation_service.settings import get_settings
from router_common.cli import run_service_cli

if __name__ == "__main__":
    sys.exit(
        run_service_cli(
            service="generation",
            create_app=create_app,
            get_settings=get_settings,
            service_dir=SERVICE_DIR,
            schema=SCHEMA,
        )
    )
