"""Checks of the harness's pure functions; run with `pytest bench/tests`.

`make test` does not collect them: pyproject.toml's testpaths leave bench/ out.
"""

import pytest

from bench.profiling import rank_frames
from bench.stats import LoadResult, percentile, render_load_table


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 99) == 10
    assert percentile([5, 1, 3], 0) == 1
    assert percentile([5, 1, 3], 100) == 5


def test_percentile_rejects_empty_input():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_percentile_rejects_share_out_of_range():
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def _result(target: str, p50: float, requests: int = 100) -> LoadResult:
    return LoadResult(
        target=target,
        concurrency=1,
        duration_s=10.0,
        requests=requests,
        p50_ms=p50,
        p95_ms=p50 * 2,
        p99_ms=p50 * 3,
        cpu_ms_per_request={"api": 1.5, "db": 0.5},
    )


def test_load_table_adds_latency_over_floor():
    table = render_load_table([_result("floor", 1.0), _result("router", 3.5)], "floor")
    rows = table.splitlines()
    assert len(rows) == 4
    assert rows[2].startswith("| floor | 1 | 10 | 1.00 |")
    assert "| – |" in rows[2]
    assert "| 2.50 |" in rows[3]
    assert "| 2.00 |" in rows[3]


def test_rank_frames_counts_self_and_inclusive_samples():
    collapsed = "\n".join(
        [
            "main (app.py:1);handle (app.py:5);encode (json.py:9) 3",
            "main (app.py:1);handle (app.py:6) 1",
        ]
    )
    total, by_self, by_inclusive = rank_frames(collapsed)
    assert total == 4
    assert by_self[0] == ("encode (json.py)", 0.75)
    assert ("handle (app.py)", 1.0) in by_inclusive
