"""Base-URL options: parsing, rejection, and the faults shared by all formats."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

Send = Callable[[httpx.Client, str], httpx.Response]


def send_openai(client: httpx.Client, options: str) -> httpx.Response:
    return client.post(
        f"/s/{options}/v1/images/generations",
        json={"prompt": "a", "size": "256x256", "response_format": "b64_json"},
        headers={"Authorization": "Bearer sk-test"},
    )


def send_stability(client: httpx.Client, options: str) -> httpx.Response:
    return client.post(
        f"/s/{options}/v2beta/stable-image/generate/core",
        data={"prompt": "a"},
        files={"none": ("", b"")},
        headers={"authorization": "Bearer sk-test", "accept": "application/json"},
    )


def send_midjourney(client: httpx.Client, options: str) -> httpx.Response:
    return client.post(
        f"/s/{options}/mj/submit/imagine",
        json={"prompt": "a"},
        headers={"mj-api-secret": "secret"},
    )


SENDERS = {
    "openai": send_openai,
    "stability": send_stability,
    "midjourney": send_midjourney,
}


def call_count(client: httpx.Client, tag: str) -> int:
    return client.get("/__sim/calls", params={"tag": tag}).json()["count"]


@pytest.mark.parametrize(
    ("segment", "message_part"),
    [
        ("bogus", "Unknown simulator option 'bogus'"),
        ("fail=abc", "'abc' is not an integer"),
        ("fail=200", "outside the range 400 to 599"),
        ("delay=-1", "outside the range"),
        ("url_ttl=soon", "'soon' is not a number"),
        ("hang=1", "'hang' is a flag"),
        ("delay", "'delay' requires a value"),
        ("tag=a,tag=b", "'tag' is given more than once"),
        ("tag=bad.tag!", "Invalid value for simulator option 'tag'"),
        ("mj_stuck,mj_fail", "cannot be combined"),
    ],
)
def test_invalid_options_rejected(
    client: httpx.Client, segment: str, message_part: str
) -> None:
    response = send_midjourney(client, segment)
    assert response.status_code == 400
    assert message_part in response.json()["message"]


def test_key_value_may_contain_equals(client: httpx.Client) -> None:
    response = client.get(
        "/s/key=sk-a=b/v1/models", headers={"Authorization": "Bearer sk-a=b"}
    )
    assert response.status_code == 200


def test_blank_items_ignored(client: httpx.Client, tag: str) -> None:
    assert send_openai(client, f",tag={tag},,").status_code == 200
    assert call_count(client, tag) == 1


@pytest.mark.parametrize("format_name", sorted(SENDERS))
def test_unknown_option_is_400(
    client: httpx.Client, format_name: str, tag: str
) -> None:
    response = SENDERS[format_name](client, f"bogus,tag={tag}")
    assert response.status_code == 400
    assert "bogus" in response.text
    assert call_count(client, tag) == 0


@pytest.mark.parametrize(
    ("format_name", "option"),
    [
        ("openai", "filtered"),
        ("openai", "mj_steps=3"),
        ("stability", "mj_queued"),
        ("stability", "url_ttl=5"),
        ("midjourney", "filtered"),
    ],
)
def test_option_of_other_format_is_400(
    client: httpx.Client, format_name: str, option: str
) -> None:
    response = SENDERS[format_name](client, option)
    assert response.status_code == 400
    assert option.split("=")[0] in response.text


@pytest.mark.parametrize("format_name", sorted(SENDERS))
def test_tag_counts_calls(client: httpx.Client, format_name: str, tag: str) -> None:
    for _ in range(3):
        assert SENDERS[format_name](client, f"tag={tag}").status_code == 200
    assert call_count(client, tag) == 3


def test_delay_waits(client: httpx.Client) -> None:
    started = time.monotonic()
    response = send_openai(client, "delay=300")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.3


def test_hang_times_out_client(client: httpx.Client, tag: str) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            f"/s/hang,tag={tag}/v1/images/generations",
            json={"prompt": "a"},
            headers={"Authorization": "Bearer sk-test"},
            timeout=0.5,
        )
    assert time.monotonic() - started < 5
    assert client.get("/healthz").status_code == 200
    record = client.get("/__sim/calls", params={"tag": tag}).json()["requests"][0]
    assert record["status"] is None


@pytest.mark.parametrize("format_name", sorted(SENDERS))
def test_fail_first_then_success(
    client: httpx.Client, format_name: str, tag: str
) -> None:
    statuses = [
        SENDERS[format_name](client, f"fail_first=2,tag={tag}").status_code
        for _ in range(3)
    ]
    assert statuses == [500, 500, 200]


def test_fail_first_restarts_after_reset(client: httpx.Client, tag: str) -> None:
    assert send_openai(client, f"fail_first=1,tag={tag}").status_code == 500
    assert send_openai(client, f"fail_first=1,tag={tag}").status_code == 200
    client.delete("/__sim/calls", params={"tag": tag})
    assert send_openai(client, f"fail_first=1,tag={tag}").status_code == 500


@pytest.mark.parametrize("format_name", sorted(SENDERS))
def test_fail_status(client: httpx.Client, format_name: str) -> None:
    response = SENDERS[format_name](client, "fail=503")
    assert response.status_code == 503
    assert response.json()


@pytest.mark.parametrize("format_name", sorted(SENDERS))
def test_rate_limit_retry_after(client: httpx.Client, format_name: str) -> None:
    response = SENDERS[format_name](client, "rate_limit=12")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "12"


def test_openai_rate_limit_body(client: httpx.Client) -> None:
    response = send_openai(client, "rate_limit=2")
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert response.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize("format_name", sorted(SENDERS))
def test_malformed_body(client: httpx.Client, format_name: str) -> None:
    response = SENDERS[format_name](client, "malformed")
    assert response.status_code == 200
    assert response.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


@pytest.mark.parametrize("format_name", sorted(SENDERS))
def test_empty_body(client: httpx.Client, format_name: str) -> None:
    response = SENDERS[format_name](client, "empty")
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.parametrize("format_name", sorted(SENDERS))
def test_html_body(client: httpx.Client, format_name: str) -> None:
    response = SENDERS[format_name](client, "html")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_auth_checked_before_faults(client: httpx.Client) -> None:
    response = client.post(
        "/s/fail=500/v1/images/generations", json={"prompt": "a"}, headers={}
    )
    assert response.status_code == 401
