"""SSRF checks of provider base URLs: at save time and after resolution."""

from __future__ import annotations

import asyncio
import socket

import pytest

from router_common.url_guard import (
    Allowlist,
    UnresolvableHostError,
    UnsafeUrlError,
    check_resolved_host,
    check_url,
)

NO_ALLOWLIST = Allowlist.parse("")
INTERNAL_URLS = [
    "http://127.0.0.1/v1",
    "http://127.1/v1",
    "http://2130706433/v1",
    "http://0x7f000001/v1",
    "http://0177.0.0.1/v1",
    "http://0.0.0.0/v1",
    "http://10.1.2.3/v1",
    "http://172.16.0.1/v1",
    "http://192.168.1.1/v1",
    "http://100.64.0.1/v1",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/v1",
    "http://[::]/v1",
    "http://[fe80::1]/v1",
    "http://[fd00::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://[::127.0.0.1]/v1",
    "http://[64:ff9b::127.0.0.1]/v1",
    "http://[64:ff9b:1::a00:1]/v1",
    "http://[2002:7f00:1::]/v1",
    "http://[ff02::1]/v1",
    "http://224.0.0.1/v1",
    "http://localhost/v1",
    "http://LOCALHOST./v1",
    "http://api.localhost/v1",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://instance-data/latest",
    "http://printer.local/v1",
    "http://%6c%6fcalhost/v1",
    "http://127。0。0。1/v1",
    "https://user:secret@api.example.com/v1",
    "ftp://api.example.com/v1",
    "api.example.com/v1",
    "http:///v1",
    "http://api.example.com:99999/v1",
]
PUBLIC_URLS = [
    "https://api.openai.com/v1",
    "https://api.stability.ai",
    "http://8.8.8.8/v1",
    "http://[2001:4860:4860::8888]/v1",
    "https://images.example.com:8443/v1",
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_check_url_rejects_internal(url):
    with pytest.raises(UnsafeUrlError):
        check_url(url, NO_ALLOWLIST)


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_check_url_accepts_public(url):
    check_url(url, NO_ALLOWLIST)


def test_allowlist_admits_exact_host_and_port():
    allowlist = Allowlist.parse("127.0.0.1:18199, sim.internal")
    check_url("http://127.0.0.1:18199/v1", allowlist)
    check_url("http://sim.internal/v1", allowlist)
    with pytest.raises(UnsafeUrlError):
        check_url("http://127.0.0.1:18200/v1", allowlist)
    with pytest.raises(UnsafeUrlError):
        check_url("http://2130706433:18199/v1", allowlist)


def test_resolved_host_name_to_loopback_is_rejected():
    # The machine's own host name resolves locally (through /etc/hosts), with
    # no DNS: on this machine to 127.0.0.1, elsewhere often to 127.0.1.1.
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    assert any(address.startswith("127.") for address in addresses), addresses
    check_url(f"http://{name}:8080/v1", NO_ALLOWLIST)
    with pytest.raises(UnsafeUrlError) as raised:
        asyncio.run(check_resolved_host(name, 8080, NO_ALLOWLIST))
    assert "internal address" in str(raised.value)


def test_resolved_host_admitted_by_address_allowlist():
    name = socket.gethostname()
    address = socket.getaddrinfo(name, 80)[0][4][0]
    asyncio.run(check_resolved_host(name, 8080, Allowlist.parse(f"{address}:8080")))
    with pytest.raises(UnsafeUrlError):
        asyncio.run(check_resolved_host(name, 8081, Allowlist.parse(f"{address}:8080")))


def test_unresolvable_host_is_reported_as_such():
    with pytest.raises(UnresolvableHostError):
        asyncio.run(check_resolved_host("no-such-host.invalid", 443, NO_ALLOWLIST))


@pytest.mark.parametrize("url", INTERNAL_URLS[:24])
def test_provider_with_internal_url_is_rejected(client, admin, url, fresh_registry):
    response = create(client, admin, url)
    assert response.status_code == 400, response.text
    fields = response.json()["error"]["details"]["fields"]
    assert [item["field"] for item in fields] == ["baseUrl"]


def test_provider_host_resolving_to_loopback_is_rejected(
    client, admin, stack, fresh_registry
):
    # A port that the allowlist (the simulator's address only) does not admit.
    url = f"http://{socket.gethostname()}:{stack.profile.port(98)}/v1"
    response = create(client, admin, url)
    assert response.status_code == 400, response.text
    assert "resolves to an internal address" in response.json()["error"]["message"]


def test_unresolvable_host_checked_at_call(
    client, admin, new_user, new_api_key, fresh_registry
):
    response = create(client, admin, "http://image-api.invalid/v1")
    assert response.status_code == 201, response.text
    key = new_api_key(new_user())
    generated = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": key},
        json={"prompt": "a boat", "size": "512x512"},
    )
    assert generated.status_code == 502, generated.text
    attempts = generated.json()["error"]["details"]["attempts"]
    assert [attempt["outcome"] for attempt in attempts] == ["error"]


def test_provider_update_to_internal_url_is_rejected(
    client, admin, new_provider, simulator_base
):
    provider = new_provider(simulator_base(tag="ssrf"))
    response = client.put(
        f"/api/v1/providers/{provider['id']}",
        json={"baseUrl": "http://169.254.169.254/latest"},
        headers=admin.headers,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["fields"][0]["field"] == "baseUrl"


def create(client, admin, base_url: str):
    return client.post(
        "/api/v1/providers",
        json={
            "name": f"ssrf-{abs(hash(base_url)) % 10**8}",
            "type": "openai",
            "apiKey": "sk-ssrf-0123456789",
            "baseUrl": base_url,
            "costPerImage": "0.01",
            "supportedSizes": ["512x512"],
        },
        headers=admin.headers,
    )
