"""Result records, percentiles and the Markdown tables of the results page.

Everything here is pure, so that bench/tests can check it without a stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], share: float) -> float:
    """Return the `share` percentile (0-100) of `values`, interpolating linearly.

    This is numpy's default ("linear") method. Raises ValueError on an empty input.
    """
    if not values:
        raise ValueError("percentile of an empty sequence is undefined")
    if not 0 <= share <= 100:
        raise ValueError(f"percentile share must be within 0-100, got {share}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * share / 100
    lower = math.floor(rank)
    upper = math.ceil(rank)
    if lower == upper:
        return float(ordered[lower])
    weight = rank - lower
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


@dataclass
class LoadResult:
    """One closed-loop run of one target at one concurrency."""

    target: str
    concurrency: int
    duration_s: float
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    # Socket errors and time-outs, which never produced a response.
    errors: int = 0
    non_2xx: int = 0
    # Per process (or process group) of the target: CPU milliseconds per
    # completed request, and the peak resident set size in MiB during the run.
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def total_cpu_ms_per_request(self) -> float:
        return sum(self.cpu_ms_per_request.values())


def added_p50_ms(result: LoadResult, floor: LoadResult | None) -> float | None:
    """Return the p50 latency that `result` adds over the floor at its concurrency."""
    if floor is None:
        return None
    return result.p50_ms - floor.p50_ms


def _format_number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _format_breakdown(values: dict[str, float], digits: int) -> str:
    return ", ".join(f"{name} {value:.{digits}f}" for name, value in values.items())


def render_load_table(results: Sequence[LoadResult], floor_name: str) -> str:
    """Render the throughput and latency table, one row per target and concurrency.

    The added latency compares each row with the floor target's row at the same
    concurrency from the same run.
    """
    floors = {r.concurrency: r for r in results if r.target == floor_name}
    lines = [
        "| target | clients | req/s | p50 ms | p95 ms | p99 ms | added p50 ms "
        "| CPU ms/req (all) | errors | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        added = None
        if result.target != floor_name:
            added = added_p50_ms(result, floors.get(result.concurrency))
        lines.append(
            f"| {result.target} | {result.concurrency} "
            f"| {_format_number(result.requests_per_second, 0)} "
            f"| {_format_number(result.p50_ms)} | {_format_number(result.p95_ms)} "
            f"| {_format_number(result.p99_ms)} | {_format_number(added)} "
            f"| {_format_number(result.total_cpu_ms_per_request)} "
            f"| {result.errors} | {result.non_2xx} |"
        )
    return "\n".join(lines)


def render_process_table(results: Sequence[LoadResult]) -> str:
    """Render CPU per request and peak RSS of every process of each target."""
    lines = [
        "| target | clients | CPU ms per request, per process | peak RSS MiB |",
        "|---|---:|---|---|",
    ]
    for result in results:
        lines.append(
            f"| {result.target} | {result.concurrency} "
            f"| {_format_breakdown(result.cpu_ms_per_request, 3)} "
            f"| {_format_breakdown(result.peak_rss_mib, 0)} |"
        )
    return "\n".join(lines)


@dataclass
class Goal:
    """One target of the results page: its rule, the measured figure, the verdict."""

    name: str
    rule: str
    figure: str
    met: bool | None

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "not measured"
        return "met" if self.met else "missed"


def render_goals(goals: Sequence[Goal]) -> str:
    lines = ["| goal | rule | measured | verdict |", "|---|---|---|---|"]
    for goal in goals:
        lines.append(f"| {goal.name} | {goal.rule} | {goal.figure} | {goal.verdict} |")
    return "\n".join(lines)


def render_rows(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a plain Markdown table; floats get two decimals."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        return str(value)

    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell(value) for value in row) + " |")
    return "\n".join(lines)
