"""Demo providers and the welcome text printed by `make run`.

When no real provider key is in the environment, the simulator is registered as
providers so the stack can generate images offline. With `OPENAI_API_KEY` set,
OpenAI itself is registered instead.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stack import Stack

OPENAI_SIZES = ["256x256", "512x512", "1024x1024", "1792x1024", "1024x1792"]


def _request(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def demo_providers(stack: Stack) -> list[dict[str, Any]]:
    openai_key = os.environ.get("OPENAI_API_KEY")
    if openai_key:
        return [
            {
                "name": "openai",
                "type": "openai",
                "apiKey": openai_key,
                "baseUrl": "https://api.openai.com/v1",
                "priority": 1,
                "costPerImage": "0.04",
                "supportedSizes": OPENAI_SIZES,
                "models": ["dall-e-2", "dall-e-3"],
                "maxImagesPerRequest": 1,
                "timeout": 120000,
            }
        ]
    simulator = stack.simulator_url
    return [
        {
            "name": "demo-simulator",
            "type": "openai",
            "apiKey": "sk-demo-simulator-key",
            "baseUrl": f"{simulator}/s/tag=demo/v1",
            "priority": 1,
            "costPerImage": "0.02",
            "supportedSizes": ["256x256", "512x512", "1024x1024"],
            "models": ["dall-e-2"],
            "maxImagesPerRequest": 10,
            "timeout": 30000,
        },
        {
            "name": "demo-simulator-backup",
            "type": "openai_compatible",
            "apiKey": "sk-demo-simulator-backup-key",
            "baseUrl": f"{simulator}/s/tag=demo-backup/v1",
            "priority": 2,
            "costPerImage": "0.03",
            "supportedSizes": ["256x256", "512x512", "1024x1024"],
            "models": ["dall-e-2"],
            "maxImagesPerRequest": 4,
            "timeout": 30000,
        },
    ]


def register_demo_providers(stack: Stack) -> None:
    base = stack.public_base_url
    env = stack.common_env()
    status, body = _request(
        "POST",
        f"{base}/api/v1/users/login",
        {"email": env["ADMIN_EMAIL"], "password": env["ADMIN_PASSWORD"]},
    )
    if status != 200:
        print(
            "Could not log in as the admin to register the demo providers "
            f"({status}: {body.get('error', {}).get('message', body)}).\n"
            "The database was probably set up by another checkout with other "
            "secrets. Run this checkout on a database of its own, for example:\n"
            "  make stop && DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/"
            "image_router_mine make run",
            file=sys.stderr,
        )
        raise SystemExit(1)
    token = body["data"]["token"]
    _, listing = _request("GET", f"{base}/api/v1/providers", token=token)
    existing = {item["name"] for item in listing.get("data", {}).get("items", [])}
    for provider in demo_providers(stack):
        if provider["name"] in existing:
            continue
        status, body = _request(
            "POST", f"{base}/api/v1/providers", provider, token=token
        )
        if status != 201:
            print(f"Could not register provider {provider['name']}: {body}")


WELCOME = """
Image Router is running at {base} (logs in {logs}).
Admin account: {admin} (its password is in {secrets}).

Try it (JSON_FIELD reads one field of the answer):
  JSON_FIELD='import json,sys; print(json.load(sys.stdin)["data"][sys.argv[1]])'
  H='Content-Type: application/json'
  ME='{{"email": "me@example.com", "password": "a long password"}}'
  curl -s -X POST {base}/api/v1/users/register -H "$H" -d "$ME"
  TOKEN=$(curl -s -X POST {base}/api/v1/users/login -H "$H" -d "$ME" \\
          | python3 -c "$JSON_FIELD" token)
  KEY=$(curl -s -X POST {base}/api/v1/keys -H "Authorization: Bearer $TOKEN" \\
          -H "$H" -d '{{"name": "demo"}}' | python3 -c "$JSON_FIELD" key)
  curl -s -X POST {base}/v1/images/generations -H "Authorization: Bearer $KEY" \\
          -H "$H" -d '{{"prompt": "a lighthouse", "size": "512x512"}}'

Stop it with `make stop`.
"""


def print_welcome(stack: Stack) -> None:
    env = stack.common_env()
    print(
        WELCOME.format(
            base=stack.public_base_url,
            logs=stack.log_dir,
            admin=env["ADMIN_EMAIL"],
            secrets=stack.profile.data_dir / "secrets.json",
        )
    )
