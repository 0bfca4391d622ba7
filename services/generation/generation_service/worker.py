"""The job worker: runs asynchronous generations and resumes orphaned ones.

Started as `python -m generation_service worker`, apart from the API so that it
scales on its own. It claims jobs with `FOR UPDATE SKIP LOCKED` (see `jobs.py`),
runs up to `WORKER_CONCURRENCY` at once, and gives a job up after
`JOB_MAX_RUNS` runs. On SIGTERM it stops claiming, lets running jobs finish
within `SHUTDOWN_GRACE_SECONDS`, and gives back the leases of the rest so that
another worker resumes them at once.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from generation_service.jobs import StoredResult, request_from_job
from generation_service.limits import Reservation
from generation_service.models import Generation
from generation_service.runtime import Runtime, open_runtime
from generation_service.settings import Settings
from router_common.errors import RouterError

log = structlog.get_logger(__name__)


class Worker:
    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.stopping = asyncio.Event()
        self.running: dict[asyncio.Task[None], Generation] = {}

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.settings.worker_concurrency)
        while not self.stopping.is_set():
            await slots.acquire()
            job = await self._claim()
            if job is None:
                slots.release()
                await self._idle()
                continue
            task = asyncio.create_task(self._run_job(job))
            self.running[task] = job
            task.add_done_callback(
                lambda done: (self.running.pop(done), slots.release())
            )
        await self._drain()

    async def _claim(self) -> Generation | None:
        try:
            job = await self.runtime.jobs.claim_next()
        except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
            log.exception("job_claim_failed")
            return None
        if job is not None and job.run_count > self.settings.job_max_runs:
            await self.runtime.jobs.give_up(
                job, f"Job abandoned after {self.settings.job_max_runs} runs"
            )
            log.warning("job_abandoned", generation_id=str(job.id))
            return None
        return job

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(
                self.stopping.wait(), self.settings.worker_poll_seconds
            )
        except TimeoutError:
            pass

    async def _run_job(self, job: Generation) -> None:
        structlog.contextvars.bind_contextvars(generation_id=str(job.id))
        runner = self.runtime.runner
        try:
            candidates = await runner.select(request_from_job(job))
        except RouterError as error:
            # The request can no longer be served (a provider was removed, say).
            await self.runtime.jobs.finish(job.id, StoredResult([], [], error))
            await self.runtime.limiter.give_back(Reservation.from_record(job.options))
            log.info("job_failed", error_type=error.error_type)
            return
        outcome = await runner.run(job, candidates)
        if outcome.error is not None:
            await self.runtime.limiter.give_back(Reservation.from_record(job.options))
        log.info(
            "job_finished",
            status=outcome.generation.status,
            error_type=outcome.error.error_type if outcome.error else None,
        )

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period; release the rest."""
        if not self.running:
            return
        log.info("worker_draining", jobs=len(self.running))
        done, pending = await asyncio.wait(
            list(self.running), timeout=self.settings.shutdown_grace_seconds
        )
        for task in pending:
            job = self.running.get(task)
            task.cancel()
            if job is not None:
                await self.runtime.jobs.release(job.id)
                log.info("job_released", generation_id=str(job.id))
        await asyncio.gather(*pending, return_exceptions=True)


async def run_worker(settings: Settings) -> None:
    async with open_runtime(settings) as runtime:
        worker = Worker(runtime, settings)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stopping.set)
        log.info("worker_started", concurrency=settings.worker_concurrency)
        await worker.run()
        log.info("worker_stopped")
