"""The job worker: runs asynchronous generations and resumes orphaned ones.

Started as `python -m generation_service worker`, apart from the API so that it
scales on its own. It claims jobs with `FOR UPDATE SKIP LOCKED` (see `jobs.py`),
runs up to `WORKER_CONCURRENCY` at once, and gives a job up after
`JOB_MAX_RUNS` runs. On SIGTERM it stops claiming, lets running jobs finish
within `SHUTDOWN_GRACE_SECONDS`, and gives back the leases of the rest so that
another worker resumes them at once. A small HTTP listener on
`WORKER_METRICS_HOST:WORKER_METRICS_PORT` serves `/metrics` and `/healthz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import structlog
import uvicorn
from sqlalchemy.exc import DBAPIError

from generation_service.jobs import StoredResult, request_from_job
from generation_service.limits import Reservation
from generation_service.metrics import queue_refresher
from generation_service.models import Generation
from generation_service.runtime import Runtime, open_runtime
from generation_service.settings import Settings
from router_common.errors import RouterError
from router_common.logging import request_id_var
from router_common.metrics import create_metrics_app
from router_common.tracing import configure_tracing

# Postgres's SQLSTATE for a table that does not exist.
UNDEFINED_TABLE = "42P01"

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
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == UNDEFINED_TABLE:
                # A new database: the API process creates the tables at start.
                log.info("jobs_table_missing", action="waiting for migrations")
                return None
            log.exception("job_claim_failed")
            return None
        except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
            log.exception("job_claim_failed")
            return None
        if job is not None and job.run_count > self.settings.job_max_runs:
            await self.runtime.jobs.give_up(
                job, f"Job abandoned after {self.settings.job_max_runs} runs"
            )
            log.warning("job_abandoned", generation_id=str(job.id))
            return None
        if job is not None and job.run_count > 1:
            # An earlier run died or was released at shutdown; this one retries.
            log.info("job_retry", generation_id=str(job.id), run=job.run_count)
        return job

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(
                self.stopping.wait(), self.settings.worker_poll_seconds
            )
        except TimeoutError:
            pass

    async def _run_job(self, job: Generation) -> None:
        # Each job runs in its own task, so these bindings stay with this job.
        request_id = (job.options or {}).get("request_id")
        if request_id:
            request_id_var.set(request_id)
            structlog.contextvars.bind_contextvars(request_id=request_id)
        structlog.contextvars.bind_contextvars(
            generation_id=str(job.id), user_id=str(job.user_id)
        )
        runner = self.runtime.runner
        try:
            candidates = await runner.select(
                request_from_job(job), take_first_slot=True
            )
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


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the worker's event loop, leaving signals to the worker."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _start_metrics_server(
    settings: Settings, runtime: Runtime, worker: Worker
) -> tuple[uvicorn.Server, asyncio.Task[None]] | None:
    """Serve `/metrics` and `/healthz` on WORKER_METRICS_PORT (0 turns it off)."""
    if settings.worker_metrics_port == 0:
        return None
    app = create_metrics_app(
        [queue_refresher(runtime.session_factory)],
        is_alive=lambda: not worker.stopping.is_set(),
    )
    server = _EmbeddedServer(
        uvicorn.Config(
            app,
            host=settings.worker_metrics_host,
            port=settings.worker_metrics_port,
            log_config=None,
            lifespan="off",
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve())
    return server, task


def _request_stop(worker: Worker, signum: signal.Signals) -> None:
    if not worker.stopping.is_set():
        log.info("shutdown_requested", signal=signum.name)
    worker.stopping.set()


async def run_worker(settings: Settings) -> None:
    configure_tracing("generation-worker", settings.otel_exporter_otlp_endpoint)
    async with open_runtime(settings, api=False) as runtime:
        worker = Worker(runtime, settings)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _request_stop, worker, signum)
        listener = await _start_metrics_server(settings, runtime, worker)
        log.info(
            "worker_started",
            concurrency=settings.worker_concurrency,
            metrics_port=settings.worker_metrics_port or None,
        )
        try:
            await worker.run()
        finally:
            if listener is not None:
                server, task = listener
                server.should_exit = True
                await task
        log.info("worker_stopped")
