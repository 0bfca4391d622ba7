"""The compose stack's `demo-providers` step, run against the test stack.

It runs deploy/compose/register_demo.py as the compose step does, with the
gateway and simulator addresses given in its environment, and checks through
the admin API that the simulator's demo providers exist afterwards.
"""

from __future__ import annotations

import subprocess
import sys

import httpx

from stack import Stack
from tests.deploy.helpers import ROOT
from tests.fixtures import User

DEMO_NAMES = {"demo-simulator", "demo-simulator-backup"}


def list_providers(client: httpx.Client, admin: User) -> list[dict[str, object]]:
    response = client.get("/api/v1/providers?limit=100", headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]["items"]


def test_register_demo_adds_simulator_providers(
    stack: Stack, admin: User, client: httpx.Client, fresh_registry: None
) -> None:
    env = stack.common_env()
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "compose" / "register_demo.py")],
        env={
            "PATH": "/usr/bin:/bin",
            "GATEWAY_URL": stack.public_base_url,
            "SIMULATOR_URL": stack.simulator_url,
            "ADMIN_EMAIL": env["ADMIN_EMAIL"],
            "ADMIN_PASSWORD": env["ADMIN_PASSWORD"],
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Could not" not in result.stdout, result.stdout
        providers = list_providers(client, admin)
        registered = {item["name"]: item for item in providers}

        assert DEMO_NAMES <= set(registered)
        for name in DEMO_NAMES:
            assert str(registered[name]["baseUrl"]).startswith(stack.simulator_url)
    finally:
        for item in list_providers(client, admin):
            if item["name"] in DEMO_NAMES:
                client.delete(f"/api/v1/providers/{item['id']}", headers=admin.headers)


def test_register_demo_requires_settings() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "compose" / "register_demo.py")],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "GATEWAY_URL" in result.stderr
