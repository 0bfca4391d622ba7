"""CPU time and resident memory of the processes behind a target, with psutil.

A process group is a root process and its descendants (nginx's workers,
uvicorn's worker processes), or a set found by a query, such as the Postgres
backends serving one database. Processes that start and end within a
measurement window lose their CPU time, except children that a root reaps, whose
time psutil reports as the root's `children_user`/`children_system`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

STOP_TIMEOUT_SECONDS = 20.0


@dataclass
class ProcessGroup:
    name: str
    find: Callable[[], list[psutil.Process]]


def tree(pid: int) -> Callable[[], list[psutil.Process]]:
    """Find a process and all of its descendants, alive at call time."""

    def find() -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    return find


def postgres_backends(database: str) -> Callable[[], list[psutil.Process]]:
    """Find the Postgres backends connected to `database` (by their process title).

    A backend's title reads `postgres: USER DATABASE HOST(PORT) STATE`.
    """

    def find() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["name", "cmdline"]):
            title = " ".join(process.info["cmdline"] or [])
            if title.startswith("postgres: ") and f" {database} " in title:
                found.append(process)
        return found

    return find


def named(name: str) -> Callable[[], list[psutil.Process]]:
    """Find every process whose name is `name` (a shared server such as Redis)."""

    def find() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["name"]) if p.info["name"] == name]

    return find


def _cpu_by_pid(processes: Iterable[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        seconds[process.pid] = (
            times.user + times.system + times.children_user + times.children_system
        )
    return seconds


@dataclass
class CpuWindow:
    """CPU seconds used by each group between `start()` and `stop()`."""

    groups: list[ProcessGroup]
    before: dict[str, dict[int, float]] = field(default_factory=dict)

    def start(self) -> None:
        self.before = {group.name: _cpu_by_pid(group.find()) for group in self.groups}

    def stop(self) -> dict[str, float]:
        used = {}
        for group in self.groups:
            after = _cpu_by_pid(group.find())
            before = self.before.get(group.name, {})
            # A process that appeared during the window counts from zero.
            used[group.name] = sum(
                max(0.0, seconds - before.get(pid, 0.0))
                for pid, seconds in after.items()
            )
        return used


class RssSampler:
    """Sample the summed RSS of each group on a thread and keep the peak, in bytes."""

    def __init__(self, groups: list[ProcessGroup], interval: float = 0.25) -> None:
        self.groups = groups
        self.interval = interval
        self.peak: dict[str, int] = {group.name: 0 for group in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        for group in self.groups:
            total = 0
            for process in group.find():
                try:
                    total += process.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.peak[group.name] = max(self.peak[group.name], total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peak_mib(self) -> dict[str, float]:
        return {name: value / 2**20 for name, value in self.peak.items()}


@dataclass
class Launched:
    """Processes this harness started, so that each is stopped by its PID."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, command: list[str], log_path: str, **options: object) -> int:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(  # noqa: S603 - commands built by the harness
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **options,  # type: ignore[call-overload]
            )
        self.processes.append(process)
        return process.pid

    def stop_all(self) -> None:
        """Stop every started process, and any descendant it leaves behind, by PID."""
        for process in reversed(self.processes):
            stop_tree(process.pid)
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self.processes.clear()


def stop_tree(pid: int) -> None:
    """Send SIGTERM to `pid`, then SIGKILL to it and its descendants still alive."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    _, alive = psutil.wait_procs(
        [psutil.Process(pid), *descendants], timeout=STOP_TIMEOUT_SECONDS
    )
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=5)


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, pid: int | None = None
) -> None:
    """Wait for `check` to pass; fail early if process `pid` has exited."""
    deadline = time.monotonic() + timeout
    while not check():
        if pid is not None and not _running(pid):
            raise RuntimeError(f"{what} exited during start-up; see its log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(0.2)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
