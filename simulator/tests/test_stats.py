"""Call statistics at `/__sim/calls`: counts, recorded requests and resets."""

from __future__ import annotations

import httpx

OPENAI_AUTH = {"Authorization": "Bearer sk-never-shown"}


def calls(client: httpx.Client, tag: str) -> dict:
    response = client.get("/__sim/calls", params={"tag": tag})
    assert response.status_code == 200
    return response.json()


def test_unknown_tag_is_empty(client: httpx.Client, tag: str) -> None:
    assert calls(client, tag) == {"tag": tag, "count": 0, "requests": []}


def test_record_fields(client: httpx.Client, tag: str) -> None:
    client.post(
        f"/s/tag={tag}/v1/images/generations",
        json={"prompt": "a fox", "size": "256x256"},
        headers={**OPENAI_AUTH, "x-trace": "t-1"},
    )
    result = calls(client, tag)
    assert result["count"] == 1
    (record,) = result["requests"]
    assert record["sequence"] == 1
    assert record["method"] == "POST"
    assert record["path"] == f"/s/tag={tag}/v1/images/generations"
    assert record["format"] == "openai"
    assert record["status"] == 200
    assert record["credentialPresent"] is True
    assert record["credentialMatched"] is None
    assert record["headers"]["authorization"] == "<present>"
    assert record["headers"]["x-trace"] == "t-1"
    assert record["body"] == {"prompt": "a fox", "size": "256x256"}


def test_secrets_never_returned(client: httpx.Client, tag: str) -> None:
    client.get(
        f"/s/key=sk-expected-secret,tag={tag}/v1/models",
        headers={"Authorization": "Bearer sk-expected-secret"},
    )
    client.post(
        f"/s/key=mj-expected-secret,tag={tag}/mj/submit/imagine",
        json={"prompt": "a"},
        headers={"mj-api-secret": "mj-wrong-secret"},
    )
    response = client.get("/__sim/calls", params={"tag": tag})
    assert "expected-secret" not in response.text
    assert "wrong-secret" not in response.text
    first, second = response.json()["requests"]
    assert first["path"] == f"/s/key=<redacted>,tag={tag}/v1/models"
    assert first["credentialMatched"] is True
    assert second["credentialMatched"] is False
    assert second["headers"]["mj-api-secret"] == "<present>"
    assert second["status"] == 401


def test_missing_credential_recorded(client: httpx.Client, tag: str) -> None:
    client.post(f"/s/key=k,tag={tag}/mj/submit/imagine", json={"prompt": "a"})
    (record,) = calls(client, tag)["requests"]
    assert record["credentialPresent"] is False
    assert record["credentialMatched"] is False
    assert "mj-api-secret" not in record["headers"]


def test_long_values_shortened(client: httpx.Client, tag: str) -> None:
    body = {"prompt": "p" * 500, "base64Array": ["data:image/png;base64,AAAA"] * 30}
    client.post(
        f"/s/tag={tag}/mj/submit/imagine",
        json=body,
        headers={"mj-api-secret": "s"},
    )
    (record,) = calls(client, tag)["requests"]
    assert record["body"]["prompt"].endswith("... (500 chars)")
    assert len(record["body"]["base64Array"]) == 21
    assert record["body"]["base64Array"][-1] == "... (30 items)"


def test_multipart_summary(client: httpx.Client, tag: str) -> None:
    client.post(
        f"/s/tag={tag}/v2beta/stable-image/generate/ultra",
        data={"prompt": "a hill", "strength": "0.4"},
        files={"image": ("in.png", b"12345", "image/png")},
        headers={"authorization": "Bearer k", "accept": "image/*"},
    )
    (record,) = calls(client, tag)["requests"]
    assert record["body"]["prompt"] == "a hill"
    assert record["body"]["image"] == {
        "filename": "in.png",
        "contentType": "image/png",
        "size": 5,
    }


def test_keeps_last_50(client: httpx.Client, tag: str) -> None:
    for _ in range(55):
        client.get(f"/s/tag={tag}/v1/models", headers=OPENAI_AUTH)
    result = calls(client, tag)
    assert result["count"] == 55
    assert len(result["requests"]) == 50
    assert result["requests"][0]["sequence"] == 6
    assert result["requests"][-1]["sequence"] == 55


def test_reset_one_tag(client: httpx.Client, tag: str) -> None:
    other = f"{tag}-other"
    client.get(f"/s/tag={tag}/v1/models", headers=OPENAI_AUTH)
    client.get(f"/s/tag={other}/v1/models", headers=OPENAI_AUTH)
    response = client.delete("/__sim/calls", params={"tag": tag})
    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert calls(client, tag)["count"] == 0
    assert calls(client, other)["count"] == 1


def test_reset_all_tags(client: httpx.Client, tag: str) -> None:
    client.get(f"/s/tag={tag}/v1/models", headers=OPENAI_AUTH)
    response = client.delete("/__sim/calls")
    assert response.status_code == 200
    assert response.json() == {"tags": {}}
    assert calls(client, tag)["count"] == 0


def test_all_tags_listed(client: httpx.Client, tag: str) -> None:
    client.get(f"/s/tag={tag}/v1/models", headers=OPENAI_AUTH)
    response = client.get("/__sim/calls")
    assert response.status_code == 200
    assert response.json()["tags"][tag] == 1


def test_files_and_health_not_counted(client: httpx.Client, tag: str) -> None:
    response = client.post(
        f"/s/tag={tag}/v1/images/generations",
        json={"prompt": "a", "size": "256x256"},
        headers=OPENAI_AUTH,
    )
    httpx.get(response.json()["data"][0]["url"])
    client.get("/healthz")
    assert calls(client, tag)["count"] == 1
