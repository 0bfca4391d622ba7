"""Load generators: wrk for the closed-loop runs, aiohttp for the in-flight runs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.stats import LoadResult, percentile

LUA_SCRIPT = Path(__file__).with_name("request.lua")
# wrk's own time-out per request; a slower response counts as an error.
WRK_TIMEOUT = "30s"


@dataclass(frozen=True)
class Endpoint:
    """One target's request: the URL, the headers and the fixed JSON body."""

    url: str
    headers: dict[str, str]
    body: dict[str, object]


def ensure_wrk() -> str:
    """Return wrk's path, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is still missing after `apt-get install -y wrk`")
    return found


def run_wrk(
    name: str, endpoint: Endpoint, concurrency: int, duration_s: float
) -> LoadResult:
    """Drive `concurrency` connections at `endpoint` for `duration_s` seconds."""
    env = {
        **os.environ,
        "BENCH_BODY": json.dumps(endpoint.body),
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in endpoint.headers.items()),
    }
    command = [
        ensure_wrk(),
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(LUA_SCRIPT),
        endpoint.url,
    ]
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=duration_s + 120
    )
    line = next(
        (
            row
            for row in completed.stdout.splitlines()
            if row.startswith("BENCH_RESULT ")
        ),
        None,
    )
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed against {endpoint.url} (exit {completed.returncode}): "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    data = json.loads(line.removeprefix("BENCH_RESULT "))
    return LoadResult(
        target=name,
        concurrency=concurrency,
        duration_s=data["duration_us"] / 1e6,
        requests=data["requests"],
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        non_2xx=data["non_2xx"],
    )


@dataclass
class InFlightResult:
    """Many requests sent at once: their outcomes and how long the last one took."""

    mode: str
    requests: int
    completed: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    completion_s: float = 0.0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    idle_rss_mib: dict[str, float] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1

    def record_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message[:300])

    @property
    def p50_s(self) -> float | None:
        return percentile(self.latencies_s, 50) if self.latencies_s else None

    @property
    def max_s(self) -> float | None:
        return max(self.latencies_s) if self.latencies_s else None


def _connector() -> aiohttp.TCPConnector:
    # No pool limit: every request gets its own connection, like separate clients.
    return aiohttp.TCPConnector(limit=0, force_close=False)


async def send_synchronous(
    endpoint: Endpoint, count: int, timeout_s: float
) -> InFlightResult:
    """Send `count` requests at once and wait for every response."""
    result = InFlightResult(mode="synchronous", requests=count)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def one(session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        try:
            async with session.post(
                endpoint.url, json=endpoint.body, headers=endpoint.headers
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            result.record_error(f"{type(error).__name__}: {error}")
            result.count("error")
            return
        result.count(str(response.status))
        if response.status == 200:
            result.completed += 1
            result.latencies_s.append(time.monotonic() - started)
        else:
            result.record_error(f"HTTP {response.status}: {body[:200]!r}")

    started = time.monotonic()
    async with aiohttp.ClientSession(
        connector=_connector(), timeout=timeout
    ) as session:
        await asyncio.gather(*(one(session) for _ in range(count)))
    result.completion_s = time.monotonic() - started
    return result


async def send_asynchronous(
    endpoint: Endpoint,
    status_url: str,
    count: int,
    timeout_s: float,
    poll_interval_s: float = 2.0,
    max_concurrent_polls: int = 32,
) -> InFlightResult:
    """Submit `count` asynchronous generations at once, then poll each to its end.

    `status_url` has a `{id}` placeholder. Polls share a bound of
    `max_concurrent_polls` requests, so that polling does not become the load.
    """
    result = InFlightResult(mode="asynchronous", requests=count)
    timeout = aiohttp.ClientTimeout(total=60)
    polls = asyncio.Semaphore(max_concurrent_polls)
    deadline = time.monotonic() + timeout_s

    async def poll(session: aiohttp.ClientSession, generation_id: str) -> str:
        while time.monotonic() < deadline:
            await asyncio.sleep(poll_interval_s)
            async with polls:
                async with session.get(
                    status_url.format(id=generation_id), headers=endpoint.headers
                ) as response:
                    data = await response.json()
            status = data.get("data", {}).get("status")
            if status in ("succeeded", "failed"):
                return status
        return "timed out"

    async def one(session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        try:
            async with session.post(
                endpoint.url, json=endpoint.body, headers=endpoint.headers
            ) as response:
                data = await response.json(content_type=None)
            if response.status != 202:
                result.count(str(response.status))
                result.record_error(f"HTTP {response.status}: {str(data)[:200]}")
                return
            outcome = await poll(session, data["data"]["id"])
        except (aiohttp.ClientError, TimeoutError, KeyError) as error:
            result.record_error(f"{type(error).__name__}: {error}")
            result.count("error")
            return
        result.count(outcome)
        if outcome == "succeeded":
            result.completed += 1
            result.latencies_s.append(time.monotonic() - started)
        else:
            result.record_error(f"generation ended as {outcome}")

    started = time.monotonic()
    async with aiohttp.ClientSession(
        connector=_connector(), timeout=timeout
    ) as session:
        await asyncio.gather(*(one(session) for _ in range(count)))
    result.completion_s = time.monotonic() - started
    return result
