"""Start the benchmark targets: Image Router's own stack, LiteLLM and Portkey.

Every target is set up against the same provider simulator, the one of the
Image Router stack started here. Ports come from BENCH_PORT_BASE: the stack
uses the offsets of deploy/local/stack.py, the peers use base + 50 and up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from bench.load import Endpoint
from bench.processes import (
    Launched,
    ProcessGroup,
    named,
    postgres_backends,
    tree,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from stack import Stack, _profiles, ensure_database  # noqa: E402

BENCH_DIR = ROOT / "bench"
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
LITELLM_REQUIREMENTS = BENCH_DIR / "requirements-litellm.txt"
PORTKEY_DIR = BENCH_DIR / "portkey"
STARTUP_TIMEOUT_SECONDS = 120.0

# The request every target serves: a small PNG, answered at once by the
# simulator, whose render cache applies because the prompt never changes.
PROMPT = "a red circle on a blue square"
IMAGE_BODY: dict[str, object] = {
    "model": "dall-e-2",
    "prompt": PROMPT,
    "n": 1,
    "size": "256x256",
    "response_format": "b64_json",
}
# Any non-empty credential is accepted by the simulator without `key=`.
SIMULATOR_API_KEY = "sk-bench"
# LiteLLM's proxy refuses to start without a master key; clients send it.
LITELLM_MASTER_KEY = f"sk-bench-{uuid.uuid4().hex}"
# High enough that no limit rejects a request during a run, but not 0, which
# would turn the limit off: limits are still evaluated on every request.
UNREACHED_LIMIT = 1_000_000_000


@dataclass(frozen=True)
class Ports:
    base: int
    nginx: int

    @property
    def simulator(self) -> int:
        return self.base + 99

    def extra(self, offset: int) -> int:
        """Return a port for an extra process; the stack leaves 50-90 free."""
        if not 50 <= offset <= 90:
            raise ValueError(f"extra port offset must be within 50-90, got {offset}")
        return self.base + offset


def simulator_base(ports: Ports, *options: str) -> str:
    """Return the simulator's OpenAI base URL with the given fault options."""
    prefix = f"/s/{','.join(options)}" if options else ""
    return f"http://127.0.0.1:{ports.simulator}{prefix}/v1"


def fallback_tag(target: str) -> str:
    """Return the simulator tag that counts a target's failing fallback calls."""
    return "fallback-" + "".join(c if c.isalnum() else "-" for c in target)


def floor_endpoint(ports: Ports, *options: str) -> Endpoint:
    return Endpoint(
        url=f"{simulator_base(ports, *options)}/images/generations",
        headers={"Authorization": f"Bearer {SIMULATOR_API_KEY}"},
        body=IMAGE_BODY,
    )


# -- Image Router ----------------------------------------------------------------


def image_router_settings() -> dict[str, str]:
    """Settings of the benchmark stack (every service reads them)."""
    limit = str(UNREACHED_LIMIT)
    return {
        "LOG_LEVEL": "WARNING",
        "USER_REQUESTS_PER_MINUTE": limit,
        "USER_IMAGES_PER_DAY": limit,
        "USER_MAX_KEY_RATE_LIMIT": limit,
        "USER_MAX_KEY_DAILY_IMAGE_LIMIT": limit,
        # nginx's per-address guard: every request of the benchmark comes
        # from 127.0.0.1.
        "IR_RATE_PER_SECOND": "1000000",
        "IR_RATE_BURST": "1000000",
        # The fallback run calls a provider that always fails; an open circuit
        # would skip it and hide the cost of the failed hop.
        "CIRCUIT_FAILURE_THRESHOLD": limit,
        # The asynchronous in-flight run queues thousands of slow jobs at once.
        "WORKER_CONCURRENCY": os.environ.get("BENCH_WORKER_CONCURRENCY", "2000"),
    }


@dataclass
class ImageRouter:
    stack: Stack
    api_key: str
    admin_headers: dict[str, str]
    ok_provider: str
    slow_provider: str

    @property
    def base_url(self) -> str:
        return self.stack.public_base_url

    def endpoint(self, **fields: object) -> Endpoint:
        return Endpoint(
            url=f"{self.base_url}/v1/images/generations",
            headers={"Authorization": f"Bearer {self.api_key}"},
            body={**IMAGE_BODY, **fields},
        )

    def groups(self) -> list[ProcessGroup]:
        """Return the processes that serve a request, plus the shared servers it uses.

        Redis is the machine's shared server, so its figures include other users'
        load; Postgres counts only the backends connected to the bench database.
        """
        groups = []
        for name in ("nginx", "generation", "keys", "providers"):
            pid = self.stack.running_pid(name)
            if pid is not None:
                groups.append(ProcessGroup(name, tree(pid)))
        for index in range(2, self.stack.profile.generation_replicas + 1):
            pid = self.stack.running_pid(f"generation-{index}")
            if pid is not None:
                groups.append(ProcessGroup(f"generation-{index}", tree(pid)))
        database = self.stack.profile.database_url.rsplit("/", 1)[1]
        groups.append(ProcessGroup("postgres", postgres_backends(database)))
        groups.append(ProcessGroup("redis (shared)", named("redis-server")))
        return groups

    def create_provider(self, name: str, base_url: str, priority: int) -> str:
        body = {
            "name": name,
            "type": "openai",
            "apiKey": SIMULATOR_API_KEY,
            "baseUrl": base_url,
            "priority": priority,
            "costPerImage": "0.02",
            "supportedSizes": ["256x256", "512x512", "1024x1024"],
            "maxImagesPerRequest": 10,
            "timeout": 60_000,
        }
        response = httpx.post(
            f"{self.base_url}/api/v1/providers",
            json=body,
            headers=self.admin_headers,
            timeout=30,
        )
        _expect(response, 201, f"create provider {name}")
        return response.json()["data"]["id"]

    def delete_provider(self, provider_id: str) -> None:
        response = httpx.delete(
            f"{self.base_url}/api/v1/providers/{provider_id}",
            headers=self.admin_headers,
            timeout=30,
        )
        if response.status_code not in (200, 204):
            _expect(response, 200, f"delete provider {provider_id}")


def _expect(response: httpx.Response, status: int, action: str) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{action} failed: HTTP {response.status_code} {response.text[:500]}"
        )


def start_image_router(
    ports: Ports, database_url: str, redis_url: str, generation_replicas: int
) -> Stack:
    """Start a fresh stack of the `test` profile under the name `bench`."""
    os.environ.update(
        {
            "TEST_STACK_NAME": "bench",
            "TEST_PORT_BASE": str(ports.base),
            "TEST_NGINX_PORT": str(ports.nginx),
            "TEST_DATABASE_URL": database_url,
            "TEST_REDIS_URL": redis_url,
            "TEST_GENERATION_REPLICAS": str(generation_replicas),
        }
    )
    stack = Stack(_profiles()["test"], overrides=image_router_settings())
    stack.down()
    ensure_database(database_url, recreate=True)
    redis.Redis.from_url(redis_url).flushdb()
    try:
        stack.up()
    except RuntimeError:
        stack.down()
        raise
    return stack


def set_up_image_router(stack: Stack, ports: Ports, slow_delay_ms: int) -> ImageRouter:
    """Register the simulator as providers and create a user with an API key.

    `bench-ok` responds at once. `bench-slow` responds after `slow_delay_ms`
    and is chosen only when a request pins it by name (the in-flight runs).
    """
    env = stack.common_env()
    base = stack.public_base_url
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.post(
            "/api/v1/users/login",
            json={"email": env["ADMIN_EMAIL"], "password": env["ADMIN_PASSWORD"]},
        )
        _expect(response, 200, "admin login")
        admin_headers = {"Authorization": f"Bearer {response.json()['data']['token']}"}

        email = f"bench-{uuid.uuid4().hex[:10]}@bench.example"
        password = uuid.uuid4().hex
        response = client.post(
            "/api/v1/users/register", json={"email": email, "password": password}
        )
        _expect(response, 201, "user registration")
        response = client.post(
            "/api/v1/users/login", json={"email": email, "password": password}
        )
        _expect(response, 200, "user login")
        user_headers = {"Authorization": f"Bearer {response.json()['data']['token']}"}
        response = client.post(
            "/api/v1/keys",
            json={
                "name": "bench",
                "rateLimit": UNREACHED_LIMIT,
                "dailyImageLimit": UNREACHED_LIMIT,
            },
            headers=user_headers,
        )
        _expect(response, 201, "API key creation")
        api_key = response.json()["data"]["key"]

    router = ImageRouter(stack, api_key, admin_headers, "bench-ok", "bench-slow")
    router.create_provider("bench-ok", simulator_base(ports), priority=10)
    router.create_provider(
        "bench-slow", simulator_base(ports, f"delay={slow_delay_ms}"), priority=10_000
    )
    return router


# -- LiteLLM ---------------------------------------------------------------------


def ensure_litellm() -> Path:
    """Install LiteLLM's proxy into its own virtualenv when it is missing."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [
            str(LITELLM_VENV / "bin" / "pip"),
            "install",
            "-q",
            "-r",
            str(LITELLM_REQUIREMENTS),
        ],
        check=True,
    )
    return binary


def litellm_config(ports: Ports, failing_tag: str) -> str:
    """LiteLLM's proxy configuration: the simulator as `dall-e-2`, no database.

    `bench-fallback` always fails and falls back to `dall-e-2`. Retries are off
    and cool-downs disabled, so that every request pays for exactly one failed
    hop (LiteLLM would otherwise stop calling the failing deployment).
    """
    config = {
        "model_list": [
            {
                "model_name": "dall-e-2",
                "litellm_params": {
                    "model": "openai/dall-e-2",
                    "api_base": simulator_base(ports),
                    "api_key": SIMULATOR_API_KEY,
                    "max_retries": 0,
                },
            },
            {
                "model_name": "bench-fallback",
                "litellm_params": {
                    "model": "openai/dall-e-2",
                    "api_base": simulator_base(ports, "fail=500", f"tag={failing_tag}"),
                    "api_key": SIMULATOR_API_KEY,
                    "max_retries": 0,
                },
            },
        ],
        "router_settings": {
            "num_retries": 0,
            "fallbacks": [{"bench-fallback": ["dall-e-2"]}],
            "disable_cooldowns": True,
        },
        "litellm_settings": {"telemetry": False, "drop_params": True},
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }
    # JSON is valid YAML, so no YAML library is needed here.
    return json.dumps(config, indent=2)


def start_litellm(
    launched: Launched,
    ports: Ports,
    port: int,
    workers: int,
    run_dir: Path,
    failing_tag: str,
) -> ProcessGroup:
    binary = ensure_litellm()
    config_path = run_dir / f"litellm-{workers}w.yaml"
    config_path.write_text(litellm_config(ports, failing_tag))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        # Use the cost map shipped in the package instead of fetching it.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(binary),
        "--config",
        str(config_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]
    pid = launched.start(command, str(run_dir / f"litellm-{workers}w.log"), env=env)
    url = f"http://127.0.0.1:{port}/health/liveliness"
    wait_until(lambda: _http_ok(url), STARTUP_TIMEOUT_SECONDS, f"LiteLLM at {url}", pid)
    return ProcessGroup(f"litellm ({workers} workers)", tree(pid))


def litellm_endpoint(port: int, model: str = "dall-e-2") -> Endpoint:
    return Endpoint(
        url=f"http://127.0.0.1:{port}/v1/images/generations",
        headers={"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
        body={**IMAGE_BODY, "model": model},
    )


# -- Portkey ---------------------------------------------------------------------


def ensure_portkey() -> None:
    """Install Portkey's gateway from bench/portkey/package.json when missing."""
    if (PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway").exists():
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=PORTKEY_DIR, check=True
    )


def start_portkey(launched: Launched, port: int, run_dir: Path) -> ProcessGroup:
    ensure_portkey()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "NODE_ENV": "production",
    }
    pid = launched.start(
        ["node", "serve-loopback.mjs", f"--port={port}", "--headless"],
        str(run_dir / "portkey.log"),
        env=env,
        cwd=PORTKEY_DIR,
    )
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: _http_ok(url), STARTUP_TIMEOUT_SECONDS, f"Portkey at {url}", pid)
    return ProcessGroup("portkey", tree(pid))


def portkey_endpoint(port: int, ports: Ports) -> Endpoint:
    return Endpoint(
        url=f"http://127.0.0.1:{port}/v1/images/generations",
        headers={
            "Authorization": f"Bearer {SIMULATOR_API_KEY}",
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": simulator_base(ports),
        },
        body=IMAGE_BODY,
    )


def portkey_fallback_endpoint(port: int, ports: Ports, failing_tag: str) -> Endpoint:
    """Portkey's fallback strategy: the failing simulator first, then the good one."""

    def target(base_url: str) -> dict[str, str]:
        return {
            "provider": "openai",
            "api_key": SIMULATOR_API_KEY,
            "custom_host": base_url,
        }

    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            target(simulator_base(ports, "fail=500", f"tag={failing_tag}")),
            target(simulator_base(ports)),
        ],
    }
    return Endpoint(
        url=f"http://127.0.0.1:{port}/v1/images/generations",
        headers={"x-portkey-config": json.dumps(config, separators=(",", ":"))},
        body=IMAGE_BODY,
    )


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
