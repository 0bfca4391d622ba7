"""Run the whole benchmark and write bench/results/latest.md and a JSON record.

    .venv/bin/python -m bench              # what `make bench` runs
    .venv/bin/python -m bench --quick      # a short run to try the harness

Every load is aimed at 127.0.0.1 and bounded in time; every process started
here is stopped by its PID when the run ends or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import micro, profiling
from bench.load import (
    Endpoint,
    InFlightResult,
    run_wrk,
    send_asynchronous,
    send_synchronous,
)
from bench.processes import CpuWindow, Launched, ProcessGroup, RssSampler, tree
from bench.stats import (
    Goal,
    LoadResult,
    render_goals,
    render_load_table,
    render_process_table,
    render_rows,
)
from bench.targets import (
    BENCH_DIR,
    LITELLM_VENV,
    PORTKEY_DIR,
    ImageRouter,
    Ports,
    fallback_tag,
    floor_endpoint,
    litellm_endpoint,
    portkey_endpoint,
    portkey_fallback_endpoint,
    set_up_image_router,
    simulator_base,
    start_image_router,
    start_litellm,
    start_portkey,
)

RESULTS_DIR = BENCH_DIR / "results"
FLOOR = "simulator (floor)"
IMAGE_ROUTER = "image-router"
LITELLM_1 = "litellm 1 worker"
LITELLM_2 = "litellm 2 workers"
PORTKEY = "portkey"
# Enough open files for the in-flight runs: each request uses a client socket,
# an nginx socket on each side and a provider connection.
OPEN_FILES = 20_000


@dataclass
class Target:
    name: str
    endpoint: Endpoint
    groups: list[ProcessGroup]


@dataclass
class Report:
    started: str
    duration_s: float
    loads: list[LoadResult] = field(default_factory=list)
    fallback: list[list[object]] = field(default_factory=list)
    failed_hop_ms: dict[str, float] = field(default_factory=dict)
    in_flight: list[InFlightResult] = field(default_factory=list)
    profiles: dict[str, tuple[int, list, list]] = field(default_factory=dict)
    micro_rows: list[list[object]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    # The machine is shared: the 1-minute load average when the run started.
    load_average_start: float = field(default_factory=lambda: os.getloadavg()[0])


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=float(env("BENCH_DURATION", "15")),
        help="seconds of load per target and concurrency (env BENCH_DURATION)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=env("BENCH_QUICK", "") not in ("", "0"),
        help="3-second runs and 200 in-flight requests of 2 s (env BENCH_QUICK=1)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=int(env("BENCH_IN_FLIGHT", "2000")),
        help="requests sent at once in each in-flight run",
    )
    parser.add_argument(
        "--skip",
        default=env("BENCH_SKIP", ""),
        help="comma-separated phases to skip: peers, fallback, profile, micro, "
        "in-flight",
    )
    parser.add_argument(
        "--port-base", type=int, default=int(env("BENCH_PORT_BASE", "23100"))
    )
    parser.add_argument(
        "--nginx-port", type=int, default=int(env("BENCH_NGINX_PORT", "23080"))
    )
    parser.add_argument(
        "--database-url",
        default=env(
            "BENCH_DATABASE_URL",
            "postgresql+asyncpg://postgres@127.0.0.1:5432/ir_bench",
        ),
    )
    parser.add_argument(
        "--redis-url", default=env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
    )
    parser.add_argument(
        "--generation-replicas",
        type=int,
        default=int(env("BENCH_GENERATION_REPLICAS", "2")),
        help="generation API processes behind nginx",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.in_flight = min(args.in_flight, 200)
    args.skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    return args


def raise_open_file_limit() -> None:
    """Raise this process's soft limit, which the processes it starts inherit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def measure(target: Target, concurrency: int, duration_s: float) -> LoadResult:
    """Run one closed-loop load and attach the CPU and memory of the target."""
    window = CpuWindow(target.groups)
    with RssSampler(target.groups) as memory:
        window.start()
        result = run_wrk(target.name, target.endpoint, concurrency, duration_s)
        used = window.stop()
    if result.requests:
        result.cpu_ms_per_request = {
            name: seconds * 1000 / result.requests for name, seconds in used.items()
        }
    result.peak_rss_mib = memory.peak_mib()
    print(
        f"  {target.name:20} c={concurrency:<3} {result.requests_per_second:8.0f} req/s"
        f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
        f"  errors {result.errors} non-2xx {result.non_2xx}",
        flush=True,
    )
    return result


def run_matrix(targets: list[Target], duration_s: float, report: Report) -> None:
    # A short unmeasured run opens connections and fills caches first.
    for target in targets:
        run_wrk(target.name, target.endpoint, 4, 1)
    # Targets take turns at each concurrency, so slow drifts in the machine's
    # load spread over all of them instead of landing on one.
    for concurrency in (1, 16, 64):
        for target in targets:
            report.loads.append(measure(target, concurrency, duration_s))


def run_fallback(
    router: ImageRouter,
    peers: dict[str, tuple[Target, Endpoint]],
    ports: Ports,
    duration_s: float,
    report: Report,
) -> None:
    """Measure the latency one failed provider hop adds, at one client.

    Each target runs its plain request and then its fallback request, in turn.
    The failed hop costs the difference, less the failing provider's own response
    time (the simulator's `fail=500`, measured directly in the same phase). The
    simulator counts the failing calls under a tag per target, which shows that
    every fallback request did pay for its failed hop.
    """
    failing = Target("simulator fail=500", floor_endpoint(ports, "fail=500"), [])
    provider_ms = measure(failing, 1, duration_s).p50_ms
    report.fallback.append(["simulator, fail=500 directly", "–", provider_ms, "–", "–"])

    for name, (plain, fallback_endpoint) in peers.items():
        plain_ms = measure(plain, 1, duration_s).p50_ms
        tag = fallback_tag(name)
        reset_calls(ports, tag)
        if name == IMAGE_ROUTER:
            failing_id = router.create_provider(
                "bench-failing", simulator_base(ports, "fail=500", f"tag={tag}"), 1
            )
            try:
                result = measure(
                    Target(f"{name} (fallback)", fallback_endpoint, plain.groups),
                    1,
                    duration_s,
                )
            finally:
                router.delete_provider(failing_id)
        else:
            result = measure(
                Target(f"{name} (fallback)", fallback_endpoint, plain.groups),
                1,
                duration_s,
            )
        hop_ms = result.p50_ms - plain_ms - provider_ms
        report.failed_hop_ms[name] = hop_ms
        report.fallback.append(
            [
                name,
                plain_ms,
                result.p50_ms,
                hop_ms,
                f"{count_calls(ports, tag)} failed calls for {result.requests} "
                f"requests, {result.non_2xx} non-2xx",
            ]
        )


def reset_calls(ports: Ports, tag: str) -> None:
    url = f"http://127.0.0.1:{ports.simulator}/__sim/calls"
    httpx.delete(url, params={"tag": tag}, timeout=10)


def count_calls(ports: Ports, tag: str) -> int:
    url = f"http://127.0.0.1:{ports.simulator}/__sim/calls"
    return httpx.get(url, params={"tag": tag}, timeout=10).json()["count"]


def run_profile(
    router: ImageRouter, target: Target, duration_s: float, launched: Launched
) -> dict[str, tuple[int, list, list]]:
    """Profile the Python services on the request path under a saturating load.

    py-spy runs twice, for a flame graph and for collapsed stacks, because two
    samplers cannot attach to one process at once. nginx is C and not sampled.
    """
    seconds = max(2, round(duration_s))
    pids = {
        name: pid
        for name in ("generation", "keys", "providers")
        if (pid := router.stack.running_pid(name)) is not None
    }
    ranked = {}
    for raw in (False, True):
        samplers = {}
        for name, pid in pids.items():
            suffix = "txt" if raw else "svg"
            output = RESULTS_DIR / f"profile-{name}.{suffix}"
            samplers[name] = profiling.record(pid, output, seconds, raw=raw)
            launched.processes.append(samplers[name])
        time.sleep(1)
        run_wrk(target.name, target.endpoint, 64, seconds + 1)
        for sampler in samplers.values():
            sampler.wait(timeout=seconds + 60)
            launched.processes.remove(sampler)
    for name in pids:
        collapsed = (RESULTS_DIR / f"profile-{name}.txt").read_text()
        ranked[name] = profiling.rank_frames(collapsed)
    return ranked


def run_in_flight(
    router: ImageRouter, count: int, delay_ms: int, report: Report
) -> None:
    """Send `count` slow generations at once, synchronous and then asynchronous."""
    groups = router.groups()
    timeout_s = delay_ms / 1000 + 180
    runs = [
        (
            "synchronous",
            lambda: send_synchronous(
                router.endpoint(provider=router.slow_provider), count, timeout_s
            ),
        ),
        (
            "asynchronous",
            lambda: send_asynchronous(
                Endpoint(
                    url=f"{router.base_url}/api/v1/images/generations",
                    headers=router.endpoint().headers,
                    body={
                        **router.endpoint().body,
                        "provider": router.slow_provider,
                        "response_format": "url",
                        "async": True,
                    },
                ),
                f"{router.base_url}/api/v1/images/generations/{{id}}",
                count,
                timeout_s + 120,
            ),
        ),
    ]
    for mode, send in runs:
        idle = RssSampler(groups)
        idle.sample()
        with RssSampler(groups) as memory:
            result = asyncio.run(send())
        result.idle_rss_mib = idle.peak_mib()
        result.peak_rss_mib = memory.peak_mib()
        report.in_flight.append(result)
        print(
            f"  in-flight {mode}: {result.completed}/{count} succeeded, "
            f"{result.errors} errors, all done in {result.completion_s:.1f} s",
            flush=True,
        )


def evaluate_goals(report: Report, quick: bool, in_flight_count: int) -> list[Goal]:
    """Mark each target of the issue as met or missed with its measured figure."""
    loads = {(r.target, r.concurrency): r for r in report.loads}
    goals = []

    router, floor = loads.get((IMAGE_ROUTER, 1)), loads.get((FLOOR, 1))
    added = router.p50_ms - floor.p50_ms if router and floor else None
    goals.append(
        Goal(
            "added latency",
            "added p50 at one client ≤ 2 ms",
            "–" if added is None else f"+{added:.2f} ms",
            None if added is None else added <= 2.0,
        )
    )

    def saturation(name: str) -> float | None:
        rates = [r.requests_per_second for r in report.loads if r.target == name]
        return max(rates) if rates else None

    ours, portkey, litellm = (
        saturation(IMAGE_ROUTER),
        saturation(PORTKEY),
        saturation(LITELLM_2),
    )
    throughput_met = None
    if ours is not None and portkey is not None and litellm is not None:
        throughput_met = ours >= portkey and ours >= 5 * litellm
    goals.append(
        Goal(
            "throughput",
            "max req/s ≥ one Portkey process and ≥ 5× LiteLLM with 2 workers",
            f"{ours or 0:.0f} req/s against Portkey {portkey or 0:.0f} and "
            f"5 × {litellm or 0:.0f} = {5 * (litellm or 0):.0f}",
            throughput_met,
        )
    )

    hop = report.failed_hop_ms.get(IMAGE_ROUTER)
    goals.append(
        Goal(
            "failed hop",
            "a failing hop adds ≤ 1 ms beyond the provider's own response time",
            "–" if hop is None else f"{hop:.2f} ms",
            None if hop is None else hop <= 1.0,
        )
    )

    errors = sum(r.errors for r in report.in_flight)
    measured = len(report.in_flight) == 2
    scale = "" if not quick else f" (quick mode: {in_flight_count} requests)"
    peaks = [max(r.peak_rss_mib.values(), default=0) for r in report.in_flight]
    goals.append(
        Goal(
            "in-flight",
            "2,000 slow generations at once, synchronous and asynchronous: "
            "no errors, memory bounded",
            f"{errors} errors; largest process peak "
            f"{max(peaks, default=0):.0f} MiB{scale}",
            None if not measured or quick else errors == 0,
        )
    )
    return goals


def _command_output(command: list[str], cwd: Path | None = None) -> str:
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, cwd=cwd, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    # An empty output is an answer too: `git status --porcelain` on a clean tree.
    return lines[0] if lines else ""


def collect_versions() -> dict[str, str]:
    root = BENCH_DIR.parent
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"], cwd=root)
    dirty = _command_output(["git", "status", "--porcelain"], cwd=root)
    # The peers are installed only when their phase runs.
    manifest = PORTKEY_DIR / "node_modules/@portkey-ai/gateway/package.json"
    portkey = (
        json.loads(manifest.read_text())["version"]
        if manifest.exists()
        else "not installed"
    )
    return {
        "image-router": f"git {commit}"
        + (" with uncommitted changes" if dirty else ""),
        "litellm": _command_output(
            [
                str(LITELLM_VENV / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ]
        ),
        "@portkey-ai/gateway": portkey,
        "node": _command_output(["node", "--version"]),
        "python": platform.python_version(),
        "nginx": _command_output(["nginx", "-v"]),
        "wrk": _command_output(["wrk", "-v"]),
    }


def describe_machine() -> list[str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return [
        f"- CPU: {os.cpu_count()} cores, {model}",
        f"- memory: {memory_kib / 2**20:.1f} GiB",
        f"- kernel: {platform.release()}",
        f"- load average at the end of the run: {os.getloadavg()[0]:.2f}",
    ]


def _in_flight_rows(results: list[InFlightResult]) -> list[list[object]]:
    rows = []
    for result in results:
        largest = max(result.peak_rss_mib, key=result.peak_rss_mib.get, default="–")
        rows.append(
            [
                result.mode,
                result.requests,
                result.completed,
                result.errors,
                ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items())),
                result.completion_s,
                result.max_s or "–",
                ", ".join(
                    f"{name} {result.idle_rss_mib.get(name, 0):.0f}→{peak:.0f}"
                    for name, peak in result.peak_rss_mib.items()
                ),
                largest,
            ]
        )
    return rows


def _profile_section(profiles: dict[str, tuple[int, list, list]]) -> list[str]:
    lines = []
    for service, (samples, by_self, by_inclusive) in profiles.items():
        lines += [
            "",
            f"#### {service} ({samples} samples)",
            "",
            render_rows(
                ["function (self time)", "share"],
                [[f"`{name}`", f"{share:.1%}"] for name, share in by_self],
            ),
            "",
            render_rows(
                ["function (inclusive)", "share"],
                [[f"`{name}`", f"{share:.1%}"] for name, share in by_inclusive],
            ),
        ]
    return lines


def render_report(report: Report, goals: list[Goal], command: str) -> str:
    lines = [
        f"# Benchmark run of {report.started}",
        "",
        f"Command: `{command}`; {report.duration_s:.0f} s per target and concurrency.",
        "",
        "## Machine",
        "",
        *describe_machine(),
        f"- load average at the start of the run: {report.load_average_start:.2f}",
        "",
        "## Versions",
        "",
        *(f"- {name}: {version}" for name, version in report.versions.items()),
        "",
        "## Goals",
        "",
        render_goals(goals),
        "",
        "## Closed-loop load",
        "",
        render_load_table(report.loads, FLOOR),
        "",
        render_process_table(report.loads),
    ]
    if report.fallback:
        lines += [
            "",
            "## Fallback: one failing provider, then a good one (1 client)",
            "",
            render_rows(
                [
                    "target",
                    "plain p50 ms",
                    "fallback p50 ms",
                    "failed hop ms",
                    "check",
                ],
                report.fallback,
            ),
        ]
    if report.in_flight:
        lines += [
            "",
            "## In-flight capacity: slow generations sent at once",
            "",
            render_rows(
                [
                    "mode",
                    "sent",
                    "succeeded",
                    "errors",
                    "outcomes",
                    "all done s",
                    "slowest s",
                    "RSS MiB idle→peak",
                    "largest",
                ],
                _in_flight_rows(report.in_flight),
            ),
        ]
        samples = [s for r in report.in_flight for s in r.error_samples]
        if samples:
            lines += ["", "First errors:", "", *(f"- `{s}`" for s in samples[:10])]
    if report.micro_rows:
        lines += [
            "",
            "## One hop: httpx against aiohttp",
            "",
            micro.render(report.micro_rows),
        ]
    if report.profiles:
        lines += [
            "",
            "## Profile at 64 clients (py-spy)",
            *_profile_section(report.profiles),
        ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, launched: Launched, report: Report) -> ImageRouter:
    """Run every phase; the caller stops what was started, whatever happens."""
    ports = Ports(base=args.port_base, nginx=args.nginx_port)
    run_dir = RESULTS_DIR / "run"
    run_dir.mkdir(parents=True, exist_ok=True)

    print("Starting Image Router's bench stack ...", flush=True)
    stack = start_image_router(
        ports, args.database_url, args.redis_url, args.generation_replicas
    )
    slow_delay_ms = 2000 if args.quick else 10_000
    router = set_up_image_router(stack, ports, slow_delay_ms)
    simulator = ProcessGroup("simulator", tree(stack.running_pid("simulator") or 0))
    targets = [
        Target(FLOOR, floor_endpoint(ports), [simulator]),
        Target(IMAGE_ROUTER, router.endpoint(), router.groups()),
    ]
    fallback_pairs = {IMAGE_ROUTER: (targets[1], router.endpoint())}
    if "peers" not in args.skip:
        print("Starting LiteLLM and Portkey ...", flush=True)
        for workers, offset, name in ((1, 50, LITELLM_1), (2, 51, LITELLM_2)):
            port = ports.extra(offset)
            group = start_litellm(
                launched, ports, port, workers, run_dir, fallback_tag(LITELLM_1)
            )
            targets.append(Target(name, litellm_endpoint(port), [group]))
        fallback_pairs[LITELLM_1] = (
            targets[2],
            litellm_endpoint(ports.extra(50), "bench-fallback"),
        )
        port = ports.extra(52)
        group = start_portkey(launched, port, run_dir)
        targets.append(Target(PORTKEY, portkey_endpoint(port, ports), [group]))
        fallback_pairs[PORTKEY] = (
            targets[-1],
            portkey_fallback_endpoint(port, ports, fallback_tag(PORTKEY)),
        )
    report.versions = collect_versions()

    print("Closed-loop load ...", flush=True)
    run_matrix(targets, args.duration, report)
    if "fallback" not in args.skip:
        print("Fallback ...", flush=True)
        run_fallback(router, fallback_pairs, ports, args.duration, report)
    if "micro" not in args.skip:
        print("httpx against aiohttp ...", flush=True)
        report.micro_rows = asyncio.run(
            micro.measure(
                simulator_base(ports), max(1.0, args.duration / 3), [1, 16, 64]
            )
        )
    if "profile" not in args.skip:
        print("Profiling ...", flush=True)
        report.profiles = run_profile(router, targets[1], args.duration, launched)
    if "in-flight" not in args.skip:
        print("In-flight capacity ...", flush=True)
        run_in_flight(router, args.in_flight, slow_delay_ms, report)
    return router


def main() -> int:
    args = parse_args()
    raise_open_file_limit()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    report = Report(
        started=started.strftime("%Y-%m-%d %H:%M UTC"), duration_s=args.duration
    )
    launched = Launched()
    router = None
    try:
        router = run(args, launched, report)
    finally:
        launched.stop_all()
        _stop_stack(args)

    goals = evaluate_goals(report, args.quick, args.in_flight)
    command = "make bench" + (" BENCH_QUICK=1" if args.quick else "")
    text = render_report(report, goals, command)
    (RESULTS_DIR / "latest.md").write_text(text)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"run-{stamp}.json").write_text(
        json.dumps(asdict(report), indent=2, default=str)
    )
    print(text)
    return 0 if router is not None else 1


def _stop_stack(args: argparse.Namespace) -> None:
    """Stop the bench stack by the PIDs it recorded, even if start-up failed."""
    from bench.targets import Stack, _profiles

    os.environ["TEST_STACK_NAME"] = "bench"
    Stack(_profiles()["test"]).down()


if __name__ == "__main__":
    raise SystemExit(main())
