from alembic import context

from providers_service.models import Base
from router_common.migration_env import run_env

run_env(context, Base.metadata)
