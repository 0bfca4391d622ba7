"""Process-wide state shared by all routes."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from .files import FileStore
from .stats import CallStats
from .tasks import TaskStore


@dataclass
class SimulatorState:
    """Call statistics, served image files and Midjourney tasks."""

    stats: CallStats = field(default_factory=CallStats)
    files: FileStore = field(default_factory=FileStore)
    tasks: TaskStore = field(default_factory=TaskStore)


def state_of(request: Request) -> SimulatorState:
    return request.app.state.simulator
