"""The two statements every synchronous generation runs, sent through asyncpg.

Creating a job and recording its result happen on every request. So they skip
SQLAlchemy's statement building and execution layers, which cost about 1 ms and
2.4 ms of CPU in the benchmark, and go to the driver as fixed SQL text that
asyncpg prepares once per connection. Each is a single statement, so it
commits on its own: one round trip, and atomic without a transaction.

The column lists come from the table definitions in `models.py`, so a new
column only needs a migration and, if it has no default, a value below.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, Table
from sqlalchemy.dialects import postgresql

from generation_service.models import Attempt, Generation, Image


def _columns(table: Table, *, without: Sequence[str] = ()) -> list[str]:
    return [column.key for column in table.c if column.key not in without]


def _qualified(table: Table) -> str:
    return f"{table.schema}.{table.name}"


def _array_types(table: Table, columns: list[str]) -> list[str]:
    """Return the Postgres array type of each column, to cast the parameters.

    String types lose their length: a cast to VARCHAR(n) would cut a longer
    value silently, while the INSERT into the column rejects it.
    """
    dialect = postgresql.dialect()
    types = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, String):
            types.append("TEXT[]")
        else:
            types.append(f"{column_type.compile(dialect=dialect)}[]")
    return types


GENERATIONS: Table = Generation.__table__  # type: ignore[assignment]
ATTEMPTS: Table = Attempt.__table__  # type: ignore[assignment]
IMAGES: Table = Image.__table__  # type: ignore[assignment]

# `created_at` comes from the database's clock, like every other row's.
JOB_COLUMNS = _columns(GENERATIONS, without=("created_at",))
INSERT_JOB = (
    f"INSERT INTO {_qualified(GENERATIONS)} ({', '.join(JOB_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(JOB_COLUMNS) + 1))}) "
    "RETURNING created_at"
)

ATTEMPT_COLUMNS = _columns(ATTEMPTS)
IMAGE_COLUMNS = _columns(IMAGES)


def _unnest_insert(table: Table, columns: list[str], first: int) -> str:
    """INSERT rows given as one array parameter per column, numbered from
    `first`, only when the `finished` CTE has a row (the lease was held)."""
    casts = ", ".join(
        f"${first + i}::{array_type}"
        for i, array_type in enumerate(_array_types(table, columns))
    )
    names = ", ".join(columns)
    return (
        f"INSERT INTO {_qualified(table)} ({names}) "
        f"SELECT {names} FROM unnest({casts}) AS source({names}) "
        "WHERE EXISTS (SELECT 1 FROM finished)"
    )


# The model's columns, named: a column added by a migration before this code
# is deployed would break building the model from `*`.
_JOB_RETURNED = ", ".join(GENERATIONS.c.keys())
# $1 id, $2 lease owner; $3-$9 the result; then the attempts' and the images'
# column arrays. COALESCE keeps a column as it is when the run sets no value.
_FIRST_ATTEMPT_PARAM = 10
_FIRST_IMAGE_PARAM = _FIRST_ATTEMPT_PARAM + len(ATTEMPT_COLUMNS)
FINISH_JOB = (
    f"WITH finished AS (UPDATE {_qualified(GENERATIONS)} SET "
    "status = $3, progress = COALESCE($4, progress), completed_at = $5, "
    "lease_owner = NULL, lease_expires_at = NULL, "
    "provider_id = COALESCE($6, provider_id), "
    "provider_name = COALESCE($7, provider_name), "
    "cost = COALESCE($8, cost), error = COALESCE($9::jsonb, error) "
    f"WHERE id = $1 AND lease_owner = $2 RETURNING {_JOB_RETURNED}), "
    "new_attempts AS ("
    f"{_unnest_insert(ATTEMPTS, ATTEMPT_COLUMNS, _FIRST_ATTEMPT_PARAM)}), "
    f"new_images AS ({_unnest_insert(IMAGES, IMAGE_COLUMNS, _FIRST_IMAGE_PARAM)}) "
    f"SELECT {_JOB_RETURNED} FROM finished"
)

_JSONB_COLUMNS = {
    column.key
    for table in (GENERATIONS, ATTEMPTS, IMAGES)
    for column in table.c
    if column.type.__class__.__name__ == "JSONB"
}


def _parameter(name: str, value: Any) -> Any:
    """Convert a value to what the driver takes: JSONB as JSON text, None as NULL."""
    if value is not None and name in _JSONB_COLUMNS:
        return json.dumps(value)
    return value


def job_arguments(generation: Generation) -> list[Any]:
    return [_parameter(name, getattr(generation, name)) for name in JOB_COLUMNS]


def finish_arguments(
    generation_id: uuid.UUID,
    lease_owner: str,
    values: dict[str, Any],
    attempts: Sequence[Attempt],
    images: Sequence[Image],
) -> list[Any]:
    """Build the arguments of FINISH_JOB; `values` contains the columns the run sets."""
    arguments: list[Any] = [
        generation_id,
        lease_owner,
        values["status"],
        values.get("progress"),
        values["completed_at"],
        values.get("provider_id"),
        values.get("provider_name"),
        values.get("cost"),
        _parameter("error", values.get("error")),
    ]
    for columns, rows in ((ATTEMPT_COLUMNS, attempts), (IMAGE_COLUMNS, images)):
        for name in columns:
            arguments.append([_parameter(name, getattr(row, name)) for row in rows])
    return arguments
