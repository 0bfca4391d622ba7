"""One provider hop through httpx's connection pool against aiohttp, in one run.

Both clients send the benchmark's image request straight to the simulator from
one asyncio process, in turn, as closed loops of 1, 16 and 64 concurrent
requests for a bounded time each. The client's own cost is what differs.

    .venv/bin/python -m bench.micro --url http://127.0.0.1:23199/v1 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from bench.stats import percentile, render_rows
from bench.targets import IMAGE_BODY, SIMULATOR_API_KEY

Send = Callable[[], Awaitable[int]]


async def closed_loop(send: Send, concurrency: int, duration_s: float) -> list[object]:
    """Run `concurrency` loops of `send` for `duration_s`; return the table row."""
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + duration_s

    async def loop() -> None:
        nonlocal failures
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status = await send()
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    if not latencies:
        return [concurrency, 0.0, "–", "–", failures]
    return [
        concurrency,
        len(latencies) / elapsed,
        percentile(latencies, 50) * 1000,
        percentile(latencies, 99) * 1000,
        failures,
    ]


async def measure(
    base_url: str, duration_s: float, concurrencies: list[int]
) -> list[list[object]]:
    url = f"{base_url}/images/generations"
    headers = {"Authorization": f"Bearer {SIMULATOR_API_KEY}"}
    rows: list[list[object]] = []

    # httpx's defaults, except a pool large enough for the highest concurrency.
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def send_httpx() -> int:
            response = await client.post(url, json=IMAGE_BODY, headers=headers)
            return response.status_code

        for concurrency in concurrencies:
            row = await closed_loop(send_httpx, concurrency, duration_s)
            rows.append([f"httpx {httpx.__version__}", *row])

    connector = aiohttp.TCPConnector(limit=1000)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send_aiohttp() -> int:
            async with session.post(url, json=IMAGE_BODY, headers=headers) as response:
                await response.read()
                return response.status

        for concurrency in concurrencies:
            row = await closed_loop(send_aiohttp, concurrency, duration_s)
            rows.append([f"aiohttp {aiohttp.__version__}", *row])
    return rows


def render(rows: list[list[object]]) -> str:
    header = ["client", "concurrency", "req/s", "p50 ms", "p99 ms", "failures"]
    return render_rows(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="simulator's OpenAI base URL")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per client and level"
    )
    args = parser.parse_args()
    rows = asyncio.run(measure(args.url, args.duration, [1, 16, 64]))
    print(render(rows))


if __name__ == "__main__":
    main()
