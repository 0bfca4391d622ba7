"""nginx's coarse per-address guard sheds a flood before it reaches Python, and
responds in the router's envelope."""

from __future__ import annotations

from dataclasses import replace

import httpx

from stack import Stack

GUARD_PORT_OFFSET = 79
REQUESTS = 20


def test_per_address_guard_answers_429_in_envelope(stack):
    # An nginx of its own with a tight guard (1 request a second, burst 2), in
    # front of the test stack's services.
    port = stack.profile.port(GUARD_PORT_OFFSET)
    profile = replace(
        stack.profile, name=f"{stack.profile.name}-guard", nginx_port=port
    )
    guarded = Stack(
        profile,
        overrides={**stack.overrides, "IR_RATE_PER_SECOND": "1", "IR_RATE_BURST": "2"},
    )
    guarded.render_nginx_config()
    spec = guarded.nginx_spec()
    guarded.start(spec)
    try:
        guarded.wait_healthy(spec)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            responses = [client.get("/api/v1/images/models") for _ in range(REQUESTS)]
            openai = client.get("/v1/models")
    finally:
        guarded.stop("nginx")

    refused = [r for r in responses if r.status_code == 429]
    # The health probe above may have used one of the burst's slots.
    assert REQUESTS - 4 <= len(refused) < REQUESTS
    body = refused[0].json()
    assert body["success"] is False
    assert body["error"]["type"] == "rate_limit_exceeded"
    assert refused[0].headers["retry-after"] == "1"
    assert refused[0].headers["x-request-id"]
    assert openai.status_code == 429
    assert openai.json()["error"]["code"] == "address_requests"
