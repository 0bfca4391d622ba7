"""Sample a running Python service with py-spy and rank where its time goes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# py-spy writes frames as `function (path/to/file.py:123)`; the line number is
# dropped so that one function's samples add up.
LINE_NUMBER = re.compile(r":\d+\)$")
# Frames on every stack of a thread (start-up, the event loop, thread pools),
# left out of the inclusive ranking because they show nothing about the work.
SCAFFOLDING = re.compile(
    r"<frozen runpy>|<module>|\(threading\.py\)|concurrent/futures/thread\.py"
    r"|asyncio/(runners|base_events|events)\.py|uvicorn/(server|_compat)\.py"
    r"|router_common/(cli|app)\.py"
)


def ensure_py_spy() -> str:
    """Return py-spy's path, installing it into this virtualenv when missing."""
    candidate = Path(sys.executable).with_name("py-spy")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("py-spy")
    if found:
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(candidate)


def record(pid: int, output: Path, duration_s: int, raw: bool) -> subprocess.Popen:
    """Start py-spy on `pid` for `duration_s`; the caller waits for it.

    `raw` writes collapsed stacks (one `frame;frame;... count` line each)
    instead of a flame graph SVG.
    """
    command = [
        ensure_py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(duration_s),
        "--rate",
        "100",
        "--output",
        str(output),
    ]
    if raw:
        # Only threads holding the GIL: idle pool threads and the event loop's
        # wait in epoll would otherwise dominate the ranking.
        command += ["--format", "raw", "--gil"]
    log = output.with_suffix(output.suffix + ".log")
    with open(log, "wb") as log_file:
        return subprocess.Popen(  # noqa: S603 - command built here
            command, stdout=log_file, stderr=subprocess.STDOUT
        )


def _frame_name(frame: str) -> str:
    return LINE_NUMBER.sub(")", frame.strip())


def rank_frames(collapsed: str, top: int = 15) -> tuple[int, list, list]:
    """Rank functions by self and by inclusive share of the sampled stacks.

    Returns the total sample count, the `top` (function, self share) pairs and
    the `top` (function, inclusive share) pairs; shares are fractions of 1.
    """
    self_samples: Counter[str] = Counter()
    inclusive_samples: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";")]
        total += count
        self_samples[frames[-1]] += count
        for frame in set(frames):
            inclusive_samples[frame] += count
    if total == 0:
        return 0, [], []
    by_self = [(name, n / total) for name, n in self_samples.most_common(top)]
    by_inclusive = [
        (name, n / total)
        for name, n in inclusive_samples.most_common()
        if not SCAFFOLDING.search(name)
    ][:top]
    return total, by_self, by_inclusive
