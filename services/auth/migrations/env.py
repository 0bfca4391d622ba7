from alembic import context

from auth_service.models import Base
from router_common.migration_env import run_env

run_env(context, Base.metadata)
