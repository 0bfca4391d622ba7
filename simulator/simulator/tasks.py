"""Midjourney task state machine, advanced by polls rather than by a clock.

Each fetch of a task is one poll. A task moves from SUBMITTED (or NOT_START
when it was queued) to IN_PROGRESS with rising progress, and reaches SUCCESS or
FAILURE on its `steps`-th poll, so tests need no sleeps.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from dataclasses import dataclass

NOT_START = "NOT_START"
SUBMITTED = "SUBMITTED"
IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
FINAL_STATUSES = frozenset({SUCCESS, FAILURE})

MAX_TASKS = 10_000
FAIL_REASON = "Simulated failure: the base URL sets mj_fail."


@dataclass(frozen=True)
class TaskBehaviour:
    """Progress settings of a task, taken from the options of its submit request."""

    steps: int
    stuck: bool
    fail: bool
    queued: bool
    missing_image: bool
    url_ttl: float


@dataclass
class Task:
    """One IMAGINE task and its current state."""

    id: str
    prompt: str
    state: str | None
    behaviour: TaskBehaviour
    submit_time: int
    status: str = SUBMITTED
    progress: str = "0%"
    start_time: int | None = None
    finish_time: int | None = None
    image_url: str | None = None
    fail_reason: str | None = None
    polls: int = 0

    def poll(self) -> str:
        """Advance the task by one poll and return its new status.

        A queued task spends its first poll in NOT_START. After that, polls
        1 to steps-1 report IN_PROGRESS and poll `steps` ends the task. A stuck
        task stays IN_PROGRESS with its progress capped at 99 %.
        """
        if self.status in FINAL_STATUSES:
            return self.status
        self.polls += 1
        step = self.polls - 1 if self.behaviour.queued else self.polls
        if step <= 0:
            self.status = NOT_START
            return self.status
        now = epoch_ms()
        if self.start_time is None:
            self.start_time = now
        steps = self.behaviour.steps
        if self.behaviour.stuck or step < steps:
            self.status = IN_PROGRESS
            self.progress = f"{min(99, step * 100 // steps)}%"
            return self.status
        self.finish_time = now
        if self.behaviour.fail:
            self.status, self.progress, self.fail_reason = FAILURE, "", FAIL_REASON
        else:
            self.status, self.progress = SUCCESS, "100%"
        return self.status

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "action": "IMAGINE",
            "status": self.status,
            "prompt": self.prompt,
            "promptEn": self.prompt,
            "description": f"/imagine {self.prompt}",
            "state": self.state,
            "submitTime": self.submit_time,
            "startTime": self.start_time,
            "finishTime": self.finish_time,
            "imageUrl": self.image_url,
            "progress": self.progress,
            "failReason": self.fail_reason,
            "properties": {"finalPrompt": self.prompt},
        }


class TaskStore:
    """In-memory tasks, oldest dropped first beyond MAX_TASKS."""

    def __init__(self, max_tasks: int = MAX_TASKS) -> None:
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._max_tasks = max_tasks

    def new_id(self) -> str:
        """Return an unused id in midjourney-proxy's form: epoch ms and 3 digits."""
        while True:
            task_id = f"{epoch_ms()}{random.randint(0, 999):03d}"
            if task_id not in self._tasks:
                return task_id

    def add(self, task: Task) -> None:
        self._tasks[task.id] = task
        while len(self._tasks) > self._max_tasks:
            self._tasks.popitem(last=False)

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)


def epoch_ms() -> int:
    return int(time.time() * 1000)
