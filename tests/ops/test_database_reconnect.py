"""Every service replaces pooled database connections that Postgres closed.

The pools check on checkout whether the driver has seen its connection close
(no round trip), instead of pinging Postgres before every transaction.
"""

from __future__ import annotations

import time
import uuid

from tests.fixtures import run_sql

TERMINATE_OTHERS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def test_pools_replace_closed_connections(
    stack, client, admin, new_user, new_api_key, new_provider, simulator_base
):
    new_provider(simulator_base(tag=f"reconnect-{uuid.uuid4().hex[:8]}"))
    user = new_user()
    key = new_api_key(user)

    def exercise_every_service() -> list[int]:
        statuses = []
        for _ in range(4):
            # Generation (job rows through the driver, reads through the ORM),
            # keys, auth and providers, each at least twice so that both
            # generation replicas are reached.
            created = client.post(
                "/api/v1/images/generations",
                headers={"X-API-Key": key},
                json={"prompt": "a harbour", "size": "256x256"},
            )
            statuses.append(created.status_code)
            if created.status_code == 200:
                generation_id = created.json()["data"]["id"]
                statuses.append(
                    client.get(
                        f"/api/v1/images/generations/{generation_id}",
                        headers={"X-API-Key": key},
                    ).status_code
                )
            statuses.append(
                client.get("/api/v1/keys", headers=user.headers).status_code
            )
            statuses.append(
                client.get("/api/v1/users/profile", headers=user.headers).status_code
            )
            statuses.append(
                client.get("/api/v1/providers", headers=admin.headers).status_code
            )
        return statuses

    # Fill the pools, then have Postgres close every connection they hold.
    assert set(exercise_every_service()) == {200}
    run_sql(stack.profile.database_url, TERMINATE_OTHERS)
    # Give each process's event loop a moment to read the closed sockets.
    time.sleep(0.5)
    assert set(exercise_every_service()) == {200}
