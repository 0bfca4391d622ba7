"""Outcome reports to the provider registry, sent in batches off the request path.

Every provider attempt ends with a report that feeds the registry's health
statistics and circuit breaker. A request does not wait for it: the report goes
into a bounded queue. One background task sends whatever has gathered in a
single ReportOutcomes call, so a busy process makes a few calls per second
instead of one per attempt. An idle process sends a report as soon as it is
queued, so the circuit breaker learns of failures within one round trip.

When the queue is full (the registry unreachable for long), new reports are
dropped and counted, because the request that made them has already been
answered. A batch that fails stays at the head of the queue and is sent again
after a pause, so reports arrive in order. Each report carries a unique id, so
the registry records a batch sent twice (after a failure midway, a lost
reply or a shutdown during a call) once. A batch the registry rejects as
malformed is dropped and counted. A registry without ReportOutcomes (an older
version during a rolling deploy) gets the reports one call each.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import structlog

from generation_service import metrics
from generation_service.peers import Peers
from imagerouter.v1 import providers_pb2

log = structlog.get_logger(__name__)

MAX_BATCH = 100
# Pause after a failed batch before the next try.
RETRY_SECONDS = 1.0
# A full queue logs its first dropped report and then one in this many.
DROP_LOG_EVERY = 1000


class OutcomeReporter:
    def __init__(self, peers: Peers, *, capacity: int = 10_000) -> None:
        self._peers = peers
        self._capacity = capacity
        self._pending: list[providers_pb2.ReportOutcomeRequest] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._send_forever())

    async def close(self) -> None:
        """Stop the sender, then send what is queued until a call fails.

        A batch the cancelled sender had in flight is sent again; its report
        ids keep the registry from counting it twice.
        """
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        while self._pending and await self._send_batch():
            pass
        if self._pending:
            log.warning("outcome_reports_unsent", reports=len(self._pending))

    def report(self, outcome: providers_pb2.ReportOutcomeRequest) -> None:
        if len(self._pending) >= self._capacity:
            metrics.OUTCOME_REPORTS_DROPPED.inc()
            if self._dropped % DROP_LOG_EVERY == 0:
                log.warning(
                    "outcome_report_dropped",
                    provider_id=outcome.provider_id,
                    dropped_so_far=self._dropped + 1,
                )
            self._dropped += 1
            return
        self._pending.append(outcome)
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def _send_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if not await self._send_batch():
                    await asyncio.sleep(RETRY_SECONDS)

    async def _send_batch(self) -> bool:
        """Send up to MAX_BATCH queued reports; return whether they were taken."""
        batch = self._pending[:MAX_BATCH]
        try:
            await self._peers.report_outcomes(batch)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return await self._send_one_by_one(batch)
            log.warning("outcome_report_failed", reports=len(batch), code=code.name)
            if code != grpc.StatusCode.INVALID_ARGUMENT:
                return False
            # Sending it again would fail the same way.
            metrics.OUTCOME_REPORTS_DROPPED.inc(len(batch))
        except Exception:  # noqa: BLE001 - the sender must outlive any failure
            log.exception("outcome_report_failed", reports=len(batch))
            return False
        del self._pending[: len(batch)]
        return True

    async def _send_one_by_one(
        self, batch: list[providers_pb2.ReportOutcomeRequest]
    ) -> bool:
        """Send a batch with ReportOutcome, for a registry that predates
        ReportOutcomes; the reports sent before a failure leave the queue."""
        for sent, report in enumerate(batch):
            try:
                await self._peers.report_outcome(report)
            except Exception as error:  # noqa: BLE001 - retried like a batch
                code = error.code() if isinstance(error, grpc.aio.AioRpcError) else None
                log.warning(
                    "outcome_report_failed",
                    reports=1,
                    code=code.name if code else type(error).__name__,
                )
                del self._pending[:sent]
                return False
        del self._pending[: len(batch)]
        return True
