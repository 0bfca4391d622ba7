"""S3 image storage against moto's S3 server: a generation process started with
IMAGE_STORAGE=s3 keeps its images in a bucket, serves them on its own route,
and a second nginx, rendered by stack.py for S3 storage, proxies their URLs to
it. The shared test stack stays on local storage, which the rest of the suite
covers; one test here checks the route in local mode too.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from generation_service.settings import Settings
from generation_service.storage import CACHE_CONTROL, FILES_PATH, new_file_name
from generation_service.storage_s3 import S3ImageStore
from stack import GENERATION_HTTP, ROOT, ServiceSpec, Stack

MOTO_SERVER = ROOT / ".venv" / "bin" / "moto_server"
# Extra processes of this module, as offsets from the test stack's port base.
MOTO_PORT_OFFSET = 60
S3_GENERATION_PORT_OFFSET = 61
S3_NGINX_PORT_OFFSET = 62
S3_PREFIX = "images/"
# moto accepts any credentials; these only have to be present.
S3_CREDENTIALS = {
    "aws_access_key_id": "moto-key-id",
    "aws_secret_access_key": "moto-secret-4f1c9b2e7d",
}
S3_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Setup:
    endpoint_url: str
    bucket: str
    client: Any
    generation_url: str
    nginx_url: str

    def keys(self) -> set[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket)
        return {item["Key"] for item in listing.get("Contents", [])}


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def moto_endpoint(stack: Stack) -> Iterator[str]:
    """Start moto's S3 server as a subprocess and stop it by its PID."""
    port = stack.profile.port(MOTO_PORT_OFFSET)
    log_path = stack.log_dir / "moto-server.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def s3_client(moto_endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=moto_endpoint, region_name=S3_REGION, **S3_CREDENTIALS
    )


@pytest.fixture(scope="module")
def s3_setup(stack: Stack, moto_endpoint: str, s3_client: Any) -> Iterator[S3Setup]:
    """A generation process on S3 storage, and an nginx in S3 mode before it."""
    bucket = f"images-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    generation_port = stack.profile.port(S3_GENERATION_PORT_OFFSET)
    nginx_port = stack.profile.port(S3_NGINX_PORT_OFFSET)
    nginx_url = f"http://127.0.0.1:{nginx_port}"

    shared = next(spec for spec in stack.service_specs() if spec.name == "generation")
    spec = ServiceSpec(
        name="generation-s3",
        command=shared.command,
        cwd=shared.cwd,
        env={
            **shared.env,
            "HTTP_PORT": str(generation_port),
            "PUBLIC_BASE_URL": nginx_url,
            "IMAGE_STORAGE": "s3",
            "S3_ENDPOINT_URL": moto_endpoint,
            "S3_BUCKET": bucket,
            "S3_REGION": S3_REGION,
            "S3_ACCESS_KEY_ID": S3_CREDENTIALS["aws_access_key_id"],
            "S3_SECRET_ACCESS_KEY": S3_CREDENTIALS["aws_secret_access_key"],
            "S3_PREFIX": S3_PREFIX,
        },
        health_url=f"http://127.0.0.1:{generation_port}/healthz",
        ready_url=f"http://127.0.0.1:{generation_port}/readyz",
    )
    # A profile of its own gives nginx its own run folder; its port base puts
    # the generation upstream on the S3 process. Only the files location is
    # used, so the other upstreams may point at nothing.
    nginx_profile = replace(
        stack.profile,
        name=f"{stack.profile.name}-s3",
        nginx_port=nginx_port,
        port_base=generation_port - GENERATION_HTTP,
        generation_replicas=1,
    )
    nginx_stack = Stack(
        nginx_profile, overrides={**stack.overrides, "IMAGE_STORAGE": "s3"}
    )
    nginx_stack.render_nginx_config()
    nginx_spec = nginx_stack.nginx_spec()

    stack.start(spec)
    nginx_stack.start(nginx_spec)
    try:
        stack.wait_healthy(spec)
        nginx_stack.wait_healthy(nginx_spec)
        yield S3Setup(
            endpoint_url=moto_endpoint,
            bucket=bucket,
            client=s3_client,
            generation_url=f"http://127.0.0.1:{generation_port}",
            nginx_url=nginx_url,
        )
    finally:
        nginx_stack.stop("nginx")
        stack.stop("generation-s3")


@pytest.fixture
def s3_direct(s3_setup: S3Setup) -> Iterator[httpx.Client]:
    """An HTTP client for the S3 generation process itself."""
    with httpx.Client(base_url=s3_setup.generation_url, timeout=60) as client:
        yield client


def file_name_of(url: str) -> str:
    assert FILES_PATH in url, url
    return url.rsplit("/", 1)[1]


def generate(
    client: httpx.Client, user: Any, *, n: int = 1, size: str = "256x256"
) -> httpx.Response:
    return client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a glass jar of marbles", "n": n, "size": size},
    )


# -- the generation process on S3 storage ---------------------------------------


def test_s3_generation_stores_images_in_bucket(
    s3_setup, s3_direct, new_user, new_provider, simulator_base
):
    new_provider(simulator_base(tag=f"s3-{uuid.uuid4().hex[:8]}"))
    before = s3_setup.keys()

    response = generate(s3_direct, new_user(), n=2)

    assert response.status_code == 200, response.text
    images = response.json()["data"]["images"]
    assert len(images) == 2
    names = {file_name_of(image["url"]) for image in images}
    assert s3_setup.keys() - before == {f"{S3_PREFIX}{name}" for name in names}
    for name in names:
        head = s3_setup.client.head_object(
            Bucket=s3_setup.bucket, Key=f"{S3_PREFIX}{name}"
        )
        assert head["ContentType"] == "image/png"
        assert head["CacheControl"] == CACHE_CONTROL


def test_s3_urls_point_at_public_files_path(
    s3_setup, s3_direct, new_user, new_provider, simulator_base
):
    new_provider(simulator_base(tag=f"s3-{uuid.uuid4().hex[:8]}"))

    response = generate(s3_direct, new_user())

    assert response.status_code == 200, response.text
    url = response.json()["data"]["images"][0]["url"]
    assert url.startswith(f"{s3_setup.nginx_url}{FILES_PATH}")
    assert s3_setup.endpoint_url not in url


def test_s3_route_streams_stored_image(
    s3_setup, s3_direct, new_user, new_provider, simulator_base
):
    new_provider(simulator_base(tag=f"s3-{uuid.uuid4().hex[:8]}"))
    response = generate(s3_direct, new_user(), size="512x512")
    assert response.status_code == 200, response.text
    name = file_name_of(response.json()["data"]["images"][0]["url"])

    served = s3_direct.get(f"{FILES_PATH}{name}")

    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert served.headers["cache-control"] == CACHE_CONTROL
    assert served.headers["x-content-type-options"] == "nosniff"
    assert png_size(served.content) == (512, 512)
    stored = s3_setup.client.get_object(
        Bucket=s3_setup.bucket, Key=f"{S3_PREFIX}{name}"
    )
    assert served.content == stored["Body"].read()
    assert served.headers["content-length"] == str(len(served.content))


def test_s3_nginx_serves_stored_url(
    s3_setup, s3_direct, new_user, new_provider, simulator_base
):
    new_provider(simulator_base(tag=f"s3-{uuid.uuid4().hex[:8]}"))
    response = generate(s3_direct, new_user())
    assert response.status_code == 200, response.text
    url = response.json()["data"]["images"][0]["url"]

    served = httpx.get(url, timeout=10)

    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    # nginx replaces generation's copies, so each header appears once.
    assert served.headers.get_list("cache-control") == [CACHE_CONTROL]
    assert served.headers.get_list("x-content-type-options") == ["nosniff"]
    assert len(served.headers.get_list("x-request-id")) == 1
    assert png_size(served.content) == (256, 256)


def test_s3_missing_image_is_not_found(s3_setup, s3_direct):
    name = new_file_name("png")

    direct = s3_direct.get(f"{FILES_PATH}{name}")
    proxied = httpx.get(f"{s3_setup.nginx_url}{FILES_PATH}{name}", timeout=10)

    assert direct.status_code == 404
    assert direct.json()["error"]["type"] == "not_found"
    assert "cache-control" not in direct.headers
    assert proxied.status_code == 404
    assert proxied.json()["error"]["type"] == "not_found"
    assert "cache-control" not in proxied.headers


@pytest.mark.parametrize(
    "name",
    [
        "short.png",
        f"{'a' * 31}.png",
        f"{'a' * 33}.png",
        f"{'a' * 32}.gif",
        f"{'a' * 32}.PNG",
        f"{'a' * 32}.png.part",
        f"{'a' * 30}..png",
    ],
)
def test_s3_route_rejects_invalid_name(s3_setup, s3_direct, name):
    # An object exists under the name, so only the name check stops it.
    s3_setup.client.put_object(
        Bucket=s3_setup.bucket, Key=f"{S3_PREFIX}{name}", Body=b"not served"
    )

    response = s3_direct.get(f"{FILES_PATH}{name}")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        f"..%2F{'a' * 32}.png",
        f"%2e%2e%2f{'a' * 32}.png",
        f"..%5C{'a' * 32}.png",
        f"{'a' * 32}.png%00.png",
    ],
)
def test_s3_route_rejects_traversal(s3_setup, s3_direct, path):
    s3_setup.client.put_object(
        Bucket=s3_setup.bucket, Key=f"{'a' * 32}.png", Body=b"outside the prefix"
    )

    response = s3_direct.get(f"{FILES_PATH}{path}")
    proxied = httpx.get(f"{s3_setup.nginx_url}{FILES_PATH}{path}", timeout=10)

    assert response.status_code == 404
    assert proxied.status_code in {400, 404}
    assert proxied.content != b"outside the prefix"


def test_s3_route_stays_inside_prefix(s3_setup, s3_direct):
    """An object outside the prefix is never served, even under a valid name."""
    name = new_file_name("png")
    s3_setup.client.put_object(Bucket=s3_setup.bucket, Key=name, Body=b"outside")

    response = s3_direct.get(f"{FILES_PATH}{name}")

    assert response.status_code == 404


def test_s3_failed_generation_leaves_no_object(
    s3_setup, s3_direct, new_user, new_provider, simulator_base, simulator_calls
):
    # Two calls of one image each: the first counted gets a 500, the other
    # succeeds and stores its image, and no other provider can make the rest.
    tag = f"s3-half-{uuid.uuid4().hex[:8]}"
    new_provider(simulator_base("fail_first=1", tag=tag), maxImagesPerRequest=1)
    before = s3_setup.keys()

    response = generate(s3_direct, new_user(), n=2)

    assert response.status_code == 502, response.text
    attempts = response.json()["error"]["details"]["attempts"]
    assert sorted(attempt["outcome"] for attempt in attempts) == ["error", "success"]
    assert simulator_calls(tag)["count"] == 2
    assert s3_setup.keys() == before


def test_s3_outage_fails_generation_with_503(
    s3_setup, s3_direct, new_user, new_provider, simulator_base, simulator_calls
):
    tag = f"s3-outage-{uuid.uuid4().hex[:8]}"
    new_provider(simulator_base(tag=tag))
    client = s3_setup.client
    saved = {
        key: client.get_object(Bucket=s3_setup.bucket, Key=key)["Body"].read()
        for key in s3_setup.keys()
    }
    for key in saved:
        client.delete_object(Bucket=s3_setup.bucket, Key=key)
    client.delete_bucket(Bucket=s3_setup.bucket)
    try:
        response = generate(s3_direct, new_user())
    finally:
        client.create_bucket(Bucket=s3_setup.bucket)
        for key, body in saved.items():
            client.put_object(Bucket=s3_setup.bucket, Key=key, Body=body)

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["type"] == "service_unavailable"
    assert error["message"] == "Image storage is unavailable; retry shortly"
    assert response.headers["retry-after"] == "5"
    assert simulator_calls(tag)["count"] == 1


def test_s3_process_log_has_no_secret(s3_setup, stack):
    log_text = (stack.log_dir / "generation-s3.log").read_text(errors="replace")
    assert "service_started" in log_text
    assert S3_CREDENTIALS["aws_secret_access_key"] not in log_text


# -- the store itself, in this process --------------------------------------------


@pytest.fixture
def unit_store(moto_endpoint: str, s3_client: Any) -> S3ImageStore:
    bucket = f"unit-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    settings = Settings(
        image_storage="s3",
        s3_endpoint_url=moto_endpoint,
        s3_bucket=bucket,
        s3_region=S3_REGION,
        s3_access_key_id=S3_CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=S3_CREDENTIALS["aws_secret_access_key"],
        s3_prefix="/unit/",
        public_base_url="http://gateway.test/",
    )
    return S3ImageStore.from_settings(settings)


def png_bytes(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "teal").save(buffer, format="PNG")
    return buffer.getvalue()


def test_s3_store_round_trip(unit_store, s3_client):
    data = png_bytes((40, 30))

    async def run() -> tuple[Any, bytes, list[bytes]]:
        stored = await unit_store.save(data)
        read = await unit_store.read(stored.file_name)
        stream = await unit_store.stream(stored.file_name)
        chunks = [chunk async for chunk in stream.chunks]
        return stored, read, chunks

    stored, read, chunks = asyncio.run(run())

    assert (stored.width, stored.height) == (40, 30)
    assert stored.content_type == "image/png"
    assert stored.byte_size == len(data)
    assert read == data
    assert b"".join(chunks) == data
    assert unit_store.url_for(stored.file_name) == (
        f"http://gateway.test{FILES_PATH}{stored.file_name}"
    )
    listing = s3_client.list_objects_v2(Bucket=unit_store.bucket)
    assert [item["Key"] for item in listing["Contents"]] == [f"unit/{stored.file_name}"]


def test_s3_store_rejects_non_image(unit_store, s3_client):
    with pytest.raises(ValueError, match="not a readable image"):
        asyncio.run(unit_store.save(b"<html>maintenance</html>"))
    assert "Contents" not in s3_client.list_objects_v2(Bucket=unit_store.bucket)


def test_s3_store_missing_object(unit_store):
    name = new_file_name("png")
    with pytest.raises(FileNotFoundError):
        asyncio.run(unit_store.read(name))
    with pytest.raises(FileNotFoundError):
        asyncio.run(unit_store.stream(name))


def test_s3_store_delete(unit_store, s3_client):
    async def run() -> None:
        kept = await unit_store.save(png_bytes((8, 8)))
        dropped = await unit_store.save(png_bytes((9, 9)))
        await unit_store.delete([dropped.file_name, new_file_name("png")])
        assert await unit_store.read(kept.file_name)
        with pytest.raises(FileNotFoundError):
            await unit_store.read(dropped.file_name)

    asyncio.run(run())
    listing = s3_client.list_objects_v2(Bucket=unit_store.bucket)
    assert len(listing["Contents"]) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "S3_BUCKET is required"),
        ({"s3_bucket": "b", "s3_access_key_id": "id"}, "set both S3_ACCESS_KEY_ID"),
        ({"s3_bucket": "b", "s3_secret_access_key": "s"}, "set both S3_ACCESS_KEY_ID"),
    ],
)
def test_s3_settings_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        Settings(image_storage="s3", **fields)


def test_s3_settings_hide_secret():
    settings = Settings(
        image_storage="s3",
        s3_bucket="b",
        s3_access_key_id="id",
        s3_secret_access_key="very-secret-value",
    )
    assert "very-secret-value" not in repr(settings)


# -- local storage --------------------------------------------------------------------


def test_local_route_serves_stored_image(
    stack, client, new_user, new_provider, simulator_base
):
    """In local mode nginx serves the files, but the route reads the same ones."""
    new_provider(simulator_base(tag=f"local-{uuid.uuid4().hex[:8]}"))
    response = generate(client, new_user())
    assert response.status_code == 200, response.text
    url = response.json()["data"]["images"][0]["url"]
    name = file_name_of(url)
    port = stack.profile.port(GENERATION_HTTP)

    direct = httpx.get(f"http://127.0.0.1:{port}{FILES_PATH}{name}", timeout=10)
    via_nginx = httpx.get(url, timeout=10)

    assert direct.status_code == 200
    assert direct.headers["cache-control"] == CACHE_CONTROL
    assert direct.content == via_nginx.content
    assert (stack.images_dir / name).read_bytes() == direct.content
