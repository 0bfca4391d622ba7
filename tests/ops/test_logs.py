"""JSON log lines: the fields every line carries, prompts only at debug level,
and LOG_LEVEL honoured."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from stack import Stack
from tests.fixtures import User
from tests.ops.helpers import (
    DEBUG_GENERATION,
    derived_spec,
    json_lines,
    log_files,
    new_request_id,
    running,
    wait_for_records,
)

PYTHON_LOGS = ("auth", "keys", "providers", "generation", "generation-2", "worker")
BASE_FIELDS = ("timestamp", "level", "service", "event")


def test_service_logs_are_json(stack: Stack) -> None:
    for name in PYTHON_LOGS:
        path = stack.log_dir / f"{name}.log"
        if not path.exists():
            continue
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines, f"{name}.log is empty"
        for line in lines:
            record = json.loads(line)
            missing = [field for field in BASE_FIELDS if field not in record]
            assert not missing, f"{name}.log: {missing} missing in {line}"


def test_service_start_logged(stack: Stack) -> None:
    for name in ("auth", "keys", "providers", "generation"):
        records = json_lines(stack.log_dir / f"{name}.log")
        started = [r for r in records if r["event"] == "service_started"]
        assert len(started) == 1, name
        assert started[0]["service"] == name
    worker = json_lines(stack.log_dir / "worker.log")
    assert [r["event"] for r in worker].count("worker_started") >= 1


def test_request_line_fields(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_api_key: Callable[..., str],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
) -> None:
    provider = new_provider(simulator_base())
    user = new_user()
    key = new_api_key(user)
    key_id = client.get("/api/v1/keys", headers=user.headers).json()["data"]["items"][
        0
    ]["id"]
    request_id = new_request_id()

    response = client.post(
        "/api/v1/images/generations",
        json={"prompt": "a ferry", "size": "256x256"},
        headers={"X-API-Key": key, "X-Request-ID": request_id},
    )

    assert response.status_code == 200, response.text
    records = wait_for_records(
        stack,
        "generation*.log",
        lambda found: any(r["event"] == "request" for r in found),
        request_id=request_id,
    )
    line = next(r for r in records if r["event"] == "request")
    assert line["level"] == "info"
    assert line["service"] == "generation"
    assert line["status"] == 200
    assert line["user_id"] == user.id
    assert line["key_id"] == key_id
    assert line["method"] == "POST"
    assert isinstance(line["latency_ms"], float)
    assert "timestamp" in line
    attempt = next(r for r in records if r["event"] == "provider_attempt")
    assert attempt["level"] == "info"
    assert attempt["provider"] == provider["name"]
    assert attempt["outcome"] == "success"
    assert attempt["status"] == 200
    assert isinstance(attempt["latency_ms"], int)
    assert attempt["key_id"] == key_id
    assert key not in json.dumps(records)


def test_user_id_on_account_routes(
    stack: Stack, client: httpx.Client, new_user: Callable[[], User]
) -> None:
    user = new_user()
    request_id = new_request_id()

    response = client.get(
        "/api/v1/users/profile", headers={**user.headers, "X-Request-ID": request_id}
    )

    assert response.status_code == 200
    records = wait_for_records(
        stack,
        "auth.log",
        lambda found: any(r["event"] == "request" for r in found),
        request_id=request_id,
    )
    line = next(record for record in records if record["event"] == "request")
    assert line["user_id"] == user.id
    assert line["status"] == 200


def test_prompt_only_at_debug(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
) -> None:
    new_provider(simulator_base())
    user = new_user()
    port = stack.profile.port(DEBUG_GENERATION)
    spec = derived_spec(
        stack, "generation", "ops-generation-debug", port, LOG_LEVEL="DEBUG"
    )
    prompt = f"a secret garden {uuid.uuid4().hex}"

    with running(stack, spec):
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/images/generations",
            json={"prompt": prompt, "size": "256x256"},
            headers=user.headers,
            timeout=60,
        )
        assert response.status_code == 200, response.text

    debug_log = json_lines(stack.log_dir / "ops-generation-debug.log")
    with_prompt = [record for record in debug_log if prompt in json.dumps(record)]
    assert [record["event"] for record in with_prompt] == ["provider_call"]
    assert with_prompt[0]["level"] == "debug"
    for path in log_files(stack):
        for line in path.read_text(errors="replace").splitlines():
            if prompt in line:
                assert json.loads(line)["level"] == "debug", f"{path.name}: {line}"
