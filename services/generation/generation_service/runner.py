"""Run a generation: choose providers, fall back, store images, record it all.

The registry returns the candidates in the order to try them. The images still
missing are asked of each candidate in turn, split into calls of at most its
`maxImagesPerRequest` made concurrently; a call that fails with a retryable
outcome (connect error, time-out, 5xx, 429, malformed response) leaves its images
to the next candidate. A content-policy refusal or a request the provider
rejects as invalid ends the generation at once. A generation succeeds only with
exactly `n` images; otherwise its stored images are deleted and it costs 0.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import httpx
import structlog

from generation_service import metrics
from generation_service.adapters import adapter_for, max_images_per_call
from generation_service.adapters.base import (
    ProviderCall,
    ProviderFailure,
    ProviderImage,
    ProviderTarget,
)
from generation_service.jobs import JobStore, StoredResult
from generation_service.models import Attempt, Generation, Image
from generation_service.peers import Peers, target_from_message
from generation_service.reporting import OutcomeReporter
from generation_service.schemas import GenerationRequest
from generation_service.settings import Settings
from generation_service.storage import ImageStore, StoredImage, fetch_provider_image
from imagerouter.v1 import providers_pb2
from router_common.errors import (
    ContentPolicyError,
    NoProviderAvailableError,
    ProviderError,
    RouterError,
    ServiceUnavailableError,
    ValidationError,
)
from router_common.logging import current_request_id
from router_common.url_guard import Allowlist, UnsafeUrlError, check_resolved_host

log = structlog.get_logger(__name__)

# Router error type recorded on an attempt, by outcome.
ATTEMPT_ERROR_TYPES = {
    "error": "provider_error",
    "timeout": "timeout",
    "rate_limited": "rate_limit_exceeded",
    "content_policy": "content_policy_violation",
    "invalid_request": "validation_error",
}


@dataclass(slots=True)
class ProducedImage:
    stored: StoredImage
    data: bytes
    provider: ProviderTarget
    revised_prompt: str | None


@dataclass(frozen=True, slots=True)
class Candidates:
    """The providers to try, in order, as the registry chose them."""

    targets: list[ProviderTarget]
    # The call slot the registry already decided on for targets[0], if asked.
    first_slot: providers_pb2.AcquireSlotResponse | None = None


@dataclass(slots=True)
class RunState:
    """The attempts and images of one run so far, written to the database at its end."""

    attempts: list[Attempt] = field(default_factory=list)
    images: list[ProducedImage] = field(default_factory=list)
    # Slots taken before the run, by provider id; each serves one call.
    slots: dict[str, providers_pb2.AcquireSlotResponse] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    generation: Generation
    images: list[ProducedImage]
    error: RouterError | None


class GenerationRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        peers: Peers,
        store: ImageStore,
        client: httpx.AsyncClient,
        jobs: JobStore,
        reporter: OutcomeReporter,
    ) -> None:
        self.settings = settings
        self.peers = peers
        self.store = store
        self.client = client
        self.jobs = jobs
        self.reporter = reporter
        self.allowlist = Allowlist.parse(settings.provider_url_allowlist)

    # -- selection ------------------------------------------------------------

    async def select(
        self, body: GenerationRequest, *, take_first_slot: bool = False
    ) -> Candidates:
        """Ask the registry for candidates; explain why there are none.

        With `take_first_slot`, the registry also takes the first candidate's
        call slot in the same call. Only a caller about to run the job should
        ask, because an unused slot still counts against the provider's limit.
        """
        try:
            selection = await self.peers.select_providers(
                size=body.size,
                model=body.model,
                n=body.n,
                provider=body.provider,
                routing=body.routing,
                take_first_slot=take_first_slot,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ValidationError(
                    error.details() or "Invalid routing options"
                ) from None
            log.warning("registry_unavailable", code=error.code().name)
            raise ServiceUnavailableError(
                "The provider registry is unavailable; retry shortly",
                headers={"Retry-After": "5"},
            ) from None

        if selection.providers:
            return Candidates(
                [target_from_message(message) for message in selection.providers],
                selection.first_slot if selection.HasField("first_slot") else None,
            )
        if body.size not in selection.available_sizes:
            sizes = list(selection.available_sizes)
            listed = ", ".join(sizes) or "none"
            raise ValidationError(
                f"Size {body.size} is not supported; available sizes: {listed}",
                details={
                    "fields": [{"field": "size", "message": "Unsupported size"}],
                    "availableSizes": sizes,
                },
                param="size",
                code="unsupported_size",
            )
        if selection.unavailable_count == 0:
            # The size exists, so the model or the pinned provider is what fails.
            field = "model" if body.model else "provider"
            what = f"provider {body.provider!r}" if body.provider else "provider"
            model = f" with model {body.model!r}" if body.model else ""
            raise ValidationError(
                f"No {what} serves size {body.size}{model}",
                details={"fields": [{"field": field, "message": "Not offered"}]},
                param=field,
            )
        raise NoProviderAvailableError(
            "Every provider that can serve this request is inactive, paused or "
            "failing; retry later",
            headers={"Retry-After": "30"},
        )

    # -- running a job ---------------------------------------------------------

    async def run(self, generation: Generation, candidates: Candidates) -> RunOutcome:
        """Run a job this process holds, then record its result.

        The outcome carries the images with their bytes, so that a synchronous
        response needs no second read, and the error that ended a failed run.
        """
        state = RunState()
        if candidates.first_slot is not None:
            state.slots[candidates.targets[0].id] = candidates.first_slot
        renewer = asyncio.create_task(self.jobs.renew_while_running(generation.id))
        error: RouterError | None = None
        try:
            await self._produce(generation, candidates.targets, state)
        except RouterError as raised:
            error = raised
        finally:
            renewer.cancel()
        return await self._finish(generation.id, state, error)

    # -- provider calls ----------------------------------------------------------

    async def _produce(
        self, generation: Generation, candidates: list[ProviderTarget], state: RunState
    ) -> None:
        remaining = generation.n
        for target in candidates:
            per_call = max_images_per_call(target, generation.model)
            parts = split_count(remaining, per_call)
            # Every part finishes (and is recorded) before a refusal ends the run.
            results = await asyncio.gather(
                *(self._attempt(generation, target, count, state) for count in parts),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            remaining -= sum(results)  # type: ignore[arg-type]
            if remaining == 0:
                return
            if target is not candidates[-1]:
                metrics.PROVIDER_FALLBACKS.labels(target.name).inc()
                log.info(
                    "provider_fallback", provider=target.name, images_missing=remaining
                )
        policy_refusals = [a for a in state.attempts if a.outcome == "content_policy"]
        if policy_refusals:
            raise ContentPolicyError(
                policy_refusals[-1].error_message or ContentPolicyError.default_message,
                code="content_policy_violation",
            )
        raise ProviderError(
            f"Every eligible provider failed ({len(state.attempts)} attempts)",
            details={
                "attempts": [attempt_summary(attempt) for attempt in state.attempts]
            },
        )

    async def _attempt(
        self,
        generation: Generation,
        target: ProviderTarget,
        count: int,
        state: RunState,
    ) -> int:
        """Make one provider call for `count` images; return how many it produced.

        Raises a client-facing error for outcomes that must not be retried.
        """
        call = ProviderCall(
            prompt=generation.prompt,
            n=count,
            size=generation.size,
            model=generation.model,
            quality=generation.quality,
            style=generation.style,
            user=(generation.options or {}).get("user"),
        )
        # Prompts are user content, so they are logged at debug level only.
        log.debug(
            "provider_call", provider=target.name, images=count, prompt=call.prompt
        )
        started = time.perf_counter()
        failure: ProviderFailure | None = None
        produced: list[ProducedImage] = []
        notes: dict[str, str] = {}
        try:
            produced, notes = await self._call_provider(
                target, call, generation.id, state
            )
        except ProviderFailure as raised:
            failure = raised
        except RouterError:
            # Our own failures, such as image storage being down, end the run.
            raise
        except Exception as error:  # noqa: BLE001 - one provider's fault, not ours
            # A bug or an unexpected response in one call (an unusable stored URL,
            # say) must move on to the next provider, not fail the request.
            log.exception("provider_call_crashed", provider=target.name)
            failure = ProviderFailure("error", f"call failed: {type(error).__name__}")
        latency_ms = int((time.perf_counter() - started) * 1000)

        self._record_attempt(
            generation, target, count, failure, latency_ms, state, notes
        )
        if failure is None:
            state.images.extend(produced)
            return len(produced)
        if (
            failure.outcome == "content_policy"
            and not self.settings.retry_content_policy
        ):
            raise ContentPolicyError(failure.message, code="content_policy_violation")
        if failure.outcome == "invalid_request":
            raise ValidationError(
                f"The provider rejected the request: {failure.message}",
                code=failure.code or "invalid_request",
            )
        return 0

    async def _call_provider(
        self,
        target: ProviderTarget,
        call: ProviderCall,
        generation_id: uuid.UUID,
        state: RunState,
    ) -> tuple[list[ProducedImage], dict[str, str]]:
        """Call one provider and store what it returned; return the images and
        the adapter's notes on the call (such as a size mapping)."""
        adapter = adapter_for(target.type)
        if adapter is None:
            raise ProviderFailure(
                "error", f"no adapter for provider type {target.type}"
            )
        url = httpx.URL(target.base_url)
        try:
            await check_resolved_host(
                url.host, url.port or _default_port(url), self.allowlist
            )
        except UnsafeUrlError as error:
            raise ProviderFailure("error", f"base URL rejected: {error}") from None

        # The registry counts the call against the provider's rateLimit and
        # claims a half-open circuit's single trial. A rejected slot moves on
        # to the next candidate, and its report pauses this one until a slot
        # frees up. The selection may have taken the first slot already.
        slot = state.slots.pop(target.id, None)
        if slot is None:
            slot = await self._acquire_slot(target)
        if not slot.granted:
            raise ProviderFailure(
                "rate_limited",
                f"skipped without a call: {slot.reason or 'no slot free'}",
                retry_after_seconds=-(-slot.retry_after_ms // 1000),
                # A provider at its own rateLimit is paused by the report until
                # a slot frees up; other refusals already reflect its state.
                reported=slot.reason in ("rate_limited", ""),
            )

        timeout = target.timeout_ms / 1000

        async def fetch_image(url: str) -> bytes:
            return await fetch_provider_image(
                self.client,
                url,
                allowlist=self.allowlist,
                max_bytes=self.settings.max_provider_image_bytes,
                timeout=timeout,
            )

        async def on_progress(percent: int) -> None:
            await self.jobs.set_progress(generation_id, percent)

        result = await adapter.generate(
            self.client,
            target,
            call,
            timeout,
            fetch_image=fetch_image,
            on_progress=on_progress,
        )
        images = [await self._store(image, target, timeout) for image in result.images]
        return images, result.notes

    async def _acquire_slot(
        self, target: ProviderTarget
    ) -> providers_pb2.AcquireSlotResponse:
        try:
            return await self.peers.acquire_slot(target.id)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise ProviderFailure("error", "provider was deleted") from None
            raise ProviderFailure(
                "error", f"no call slot: registry failed with {error.code().name}"
            ) from None

    async def _store(
        self, image: ProviderImage, target: ProviderTarget, timeout: float
    ) -> ProducedImage:
        data = image.data
        if data is None:
            data = await fetch_provider_image(
                self.client,
                image.url or "",
                allowlist=self.allowlist,
                max_bytes=self.settings.max_provider_image_bytes,
                timeout=timeout,
            )
        if len(data) > self.settings.max_provider_image_bytes:
            raise ProviderFailure("error", "image larger than the configured maximum")
        try:
            stored = await self.store.save(data)
        except ValueError as error:
            raise ProviderFailure(
                "error", f"response is not an image: {error}"
            ) from None
        return ProducedImage(stored, data, target, image.revised_prompt)

    def _record_attempt(
        self,
        generation: Generation,
        target: ProviderTarget,
        count: int,
        failure: ProviderFailure | None,
        latency_ms: int,
        state: RunState,
        notes: dict[str, str] | None = None,
    ) -> None:
        outcome = failure.outcome if failure else "success"
        state.attempts.append(
            Attempt(
                id=uuid.uuid4(),
                generation_id=generation.id,
                provider_id=uuid.UUID(target.id),
                provider_name=target.name,
                outcome=outcome,
                error_type=ATTEMPT_ERROR_TYPES.get(outcome),
                error_message=failure.message[:500] if failure else None,
                status_code=failure.status_code if failure else 200,
                latency_ms=latency_ms,
                images_requested=count,
                notes=notes or None,
                created_at=datetime.now(UTC),
            )
        )
        metrics.record_attempt(target.name, outcome, latency_ms)
        log.info(
            "provider_attempt",
            provider=target.name,
            outcome=outcome,
            status=failure.status_code if failure else 200,
            latency_ms=latency_ms,
            images=count,
            error=failure.message[:300] if failure else None,
        )
        if failure is not None and not failure.reported:
            return
        # Reported off the critical path, batched with other attempts' reports.
        self.reporter.report(
            providers_pb2.ReportOutcomeRequest(
                provider_id=target.id,
                outcome=outcome,
                latency_ms=latency_ms,
                error_type=ATTEMPT_ERROR_TYPES.get(outcome, ""),
                error_message=failure.message[:300] if failure else "",
                retry_after_seconds=failure.retry_after_seconds if failure else 0,
                request_id=current_request_id() or "",
                report_id=uuid.uuid4().hex,
            )
        )

    # -- recording ----------------------------------------------------------------

    async def _finish(
        self, generation_id: uuid.UUID, state: RunState, error: RouterError | None
    ) -> RunOutcome:
        images = state.images if error is None else []
        result = StoredResult(
            attempts=state.attempts,
            images=[
                _image_row(generation_id, i, image) for i, image in enumerate(images)
            ],
            error=error,
        )
        finished, recorded = await self.jobs.finish(generation_id, result)
        if recorded:
            _count_finished(finished, images)
        if not recorded or error is not None:
            # Images of a failed run, or of a run that lost its job to another
            # worker, are not kept.
            await self.store.delete([image.stored.file_name for image in state.images])
            images = []
        if error is not None:
            error.details["generationId"] = str(generation_id)
            error.details.setdefault(
                "attempts", [attempt_summary(attempt) for attempt in state.attempts]
            )
        return RunOutcome(finished, images if recorded else [], error)


def _count_finished(generation: Generation, images: list[ProducedImage]) -> None:
    metrics.GENERATIONS_FINISHED.labels(generation.status).inc()
    by_provider: dict[str, list[ProducedImage]] = {}
    for image in images:
        by_provider.setdefault(image.provider.name, []).append(image)
    for name, produced in by_provider.items():
        cost = sum((image.provider.cost_per_image for image in produced), Decimal(0))
        metrics.record_images(name, len(produced), cost)


def split_count(total: int, per_call: int) -> list[int]:
    """Split `total` images into calls of at most `per_call` each."""
    full, rest = divmod(total, per_call)
    return [per_call] * full + ([rest] if rest else [])


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _image_row(generation_id: uuid.UUID, position: int, image: ProducedImage) -> Image:
    return Image(
        id=uuid.uuid4(),
        generation_id=generation_id,
        position=position,
        file_name=image.stored.file_name,
        content_type=image.stored.content_type,
        width=image.stored.width,
        height=image.stored.height,
        byte_size=image.stored.byte_size,
        provider_id=uuid.UUID(image.provider.id),
        cost=image.provider.cost_per_image,
        revised_prompt=image.revised_prompt,
    )


def attempt_summary(attempt: Attempt) -> dict[str, object]:
    return {
        "provider": attempt.provider_name,
        "outcome": attempt.outcome,
        "errorType": attempt.error_type,
        "latencyMs": attempt.latency_ms,
    }
