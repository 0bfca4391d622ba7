"""midjourney-proxy format: submit envelope, task polling, grid image and options."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

AUTH = {"mj-api-secret": "mj-test-secret"}
TASK_FIELDS = {
    "id",
    "action",
    "status",
    "prompt",
    "promptEn",
    "description",
    "state",
    "submitTime",
    "startTime",
    "finishTime",
    "imageUrl",
    "progress",
    "failReason",
    "properties",
}


def submit(
    client: httpx.Client,
    body: Any,
    options: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    prefix = f"/s/{options}" if options else ""
    return client.post(
        f"{prefix}/mj/submit/imagine",
        json=body,
        headers=AUTH if headers is None else headers,
    )


def fetch(client: httpx.Client, task_id: str, options: str = "") -> httpx.Response:
    prefix = f"/s/{options}" if options else ""
    return client.get(f"{prefix}/mj/task/{task_id}/fetch", headers=AUTH)


def submit_task(client: httpx.Client, prompt: str, options: str = "") -> str:
    response = submit(client, {"prompt": prompt}, options)
    assert response.status_code == 200
    return response.json()["result"]


def poll(client: httpx.Client, task_id: str, times: int) -> list[dict[str, Any]]:
    tasks = []
    for _ in range(times):
        response = fetch(client, task_id)
        assert response.status_code == 200
        tasks.append(response.json())
    return tasks


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_submit_envelope(client: httpx.Client) -> None:
    response = submit(client, {"prompt": "a dragon", "state": "order-7"})
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 1
    assert body["description"] == "Submit success"
    assert body["properties"] == {}
    assert body["result"].isdigit()
    assert len(body["result"]) == 16


def test_task_reaches_success_with_grid(client: httpx.Client) -> None:
    response = submit(client, {"prompt": "a dragon", "state": "order-7"})
    task_id = response.json()["result"]
    first, second = poll(client, task_id, 2)
    assert set(first) == TASK_FIELDS
    assert first["status"] == "IN_PROGRESS"
    assert first["progress"] == "50%"
    assert first["imageUrl"]
    assert second["status"] == "SUCCESS"
    assert second["progress"] == "100%"
    assert second["action"] == "IMAGINE"
    assert second["state"] == "order-7"
    assert second["description"] == "/imagine a dragon"
    assert second["failReason"] is None
    assert second["submitTime"] <= second["startTime"] <= second["finishTime"]
    grid_response = httpx.get(second["imageUrl"])
    assert grid_response.status_code == 200
    grid = decode(grid_response.content)
    assert grid.format == "PNG"
    assert grid.size == (1024, 1024)
    quadrants = [
        grid.getpixel((x, y))
        for x, y in [(500, 500), (1000, 500), (500, 1000), (1000, 1000)]
    ]
    assert len(set(quadrants)) == 4


def test_grid_follows_aspect_ratio(client: httpx.Client) -> None:
    task_id = submit_task(client, "a wide road --ar 16:9", "mj_steps=1")
    (task,) = poll(client, task_id, 1)
    assert task["status"] == "SUCCESS"
    grid = decode(httpx.get(task["imageUrl"]).content)
    assert grid.size == (1024, 576)


def test_steps_progress_rises(client: httpx.Client) -> None:
    task_id = submit_task(client, "a forest", "mj_steps=4")
    tasks = poll(client, task_id, 5)
    assert [task["status"] for task in tasks] == [
        "IN_PROGRESS",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "SUCCESS",
        "SUCCESS",
    ]
    assert [task["progress"] for task in tasks] == ["25%", "50%", "75%", "100%", "100%"]


def test_stuck_task_never_finishes(client: httpx.Client) -> None:
    task_id = submit_task(client, "a forest", "mj_stuck")
    tasks = poll(client, task_id, 6)
    assert {task["status"] for task in tasks} == {"IN_PROGRESS"}
    assert tasks[-1]["progress"] == "99%"
    assert tasks[-1]["finishTime"] is None


def test_failing_task(client: httpx.Client) -> None:
    task_id = submit_task(client, "a forest", "mj_fail")
    first, second = poll(client, task_id, 2)
    assert first["status"] == "IN_PROGRESS"
    assert second["status"] == "FAILURE"
    assert second["progress"] == ""
    assert second["failReason"]
    assert second["finishTime"] is not None


def test_queued_submit(client: httpx.Client) -> None:
    response = submit(client, {"prompt": "a forest"}, "mj_queued")
    body = response.json()
    assert response.status_code == 200
    assert body["code"] == 22
    assert body["properties"] == {"numberOfQueues": 1}
    statuses = [task["status"] for task in poll(client, body["result"], 3)]
    assert statuses == ["NOT_START", "IN_PROGRESS", "SUCCESS"]


def test_banned_prompt(client: httpx.Client) -> None:
    response = submit(client, {"prompt": "forbidden words"}, "content_policy")
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 24
    assert body["result"] is None
    assert body["properties"]["bannedWord"] == "forbidden"
    assert body["properties"]["promptEn"] == "forbidden words"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": "   "},
        {"prompt": 3},
        {"prompt": "a", "base64Array": ["not a data url"]},
        {"prompt": "a", "state": 5},
    ],
)
def test_validation_code_4(client: httpx.Client, body: dict[str, Any]) -> None:
    response = submit(client, body)
    assert response.status_code == 200
    assert response.json()["code"] == 4
    assert response.json()["result"] is None


def test_base64_array_accepted(client: httpx.Client) -> None:
    body = {"prompt": "a", "base64Array": ["data:image/png;base64,iVBORw0KGgo="]}
    assert submit(client, body).json()["code"] == 1


def test_invalid_json_is_spring_400(client: httpx.Client) -> None:
    response = client.post(
        "/mj/submit/imagine",
        content=b"{oops",
        headers={**AUTH, "content-type": "application/json"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400
    assert body["error"] == "Bad Request"
    assert body["path"] == "/mj/submit/imagine"


def test_unknown_task_is_empty_200(client: httpx.Client) -> None:
    response = fetch(client, "1234567890123999")
    assert response.status_code == 200
    assert response.content == b""


def test_missing_secret_is_empty_401(client: httpx.Client) -> None:
    response = submit(client, {"prompt": "a"}, headers={})
    assert response.status_code == 401
    assert response.content == b""
    response = client.get("/mj/task/1/fetch")
    assert response.status_code == 401
    assert response.content == b""


def test_expected_secret_enforced(client: httpx.Client) -> None:
    wrong = submit(client, {"prompt": "a"}, "key=mj-right")
    assert wrong.status_code == 401
    assert wrong.content == b""
    right = submit(
        client, {"prompt": "a"}, "key=mj-right", {"mj-api-secret": "mj-right"}
    )
    assert right.json()["code"] == 1


def test_list_by_condition(client: httpx.Client) -> None:
    first = submit_task(client, "one")
    second = submit_task(client, "two")
    response = client.post(
        "/mj/task/list-by-condition",
        json={"ids": [first, "0000", second]},
        headers=AUTH,
    )
    assert response.status_code == 200
    tasks = response.json()
    assert [task["id"] for task in tasks] == [first, second]
    assert {task["status"] for task in tasks} == {"IN_PROGRESS"}
    bad = client.post("/mj/task/list-by-condition", json={"ids": "x"}, headers=AUTH)
    assert bad.status_code == 400


def test_missing_image_on_success(client: httpx.Client) -> None:
    task_id = submit_task(client, "a forest", "mj_steps=1,missing_images")
    (task,) = poll(client, task_id, 1)
    assert task["status"] == "SUCCESS"
    assert task["imageUrl"] is None


def test_grid_url_expires(client: httpx.Client) -> None:
    task_id = submit_task(client, "a forest", "mj_steps=1,url_ttl=0")
    (task,) = poll(client, task_id, 1)
    assert httpx.get(task["imageUrl"]).status_code == 404


def test_fail_and_rate_limit_bodies(client: httpx.Client) -> None:
    failed = submit(client, {"prompt": "a"}, "fail=502")
    assert failed.status_code == 502
    assert failed.json()["error"] == "Bad Gateway"
    assert failed.json()["path"] == "/mj/submit/imagine"
    limited = submit(client, {"prompt": "a"}, "rate_limit=3")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    unauthorized = submit(client, {"prompt": "a"}, "fail=401")
    assert unauthorized.status_code == 401
    assert unauthorized.content == b""
